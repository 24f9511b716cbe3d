// The base of every error vmmkit throws on purpose, and the errors that need nothing else, in a
// file of their own so that host/ and uapi/ (below errors/) can use them without an import cycle.

/**
 * Base of every error vmmkit throws on purpose. `code` tells the kinds apart (`'CONFIG'`,
 * `'VFIO'`, `'HOST'`, ...); where a system call failed, `errno` is its errno name (`'EBUSY'`),
 * on the error itself or on the HostError in its `cause` chain (`errnoOf`).
 */
export abstract class VmmError extends Error {
  abstract readonly code: string;
}

/**
 * A call was given an argument outside what it accepts: a bug in the caller (a bitmap of the
 * wrong size, a view outside its mapping, an unaligned range). Names the argument.
 */
export class ArgumentError extends VmmError {
  override readonly name = 'ArgumentError';
  readonly code = 'ARGUMENT';

  /** @param argument the argument at fault (`offset`, `bitmap`, `iova`). */
  constructor(message: string, readonly argument?: string) {
    super(message);
  }
}

/** Something that must not happen did (a bug in vmmkit or in a plugin). */
export class InvariantError extends VmmError {
  override readonly name = 'InvariantError';
  readonly code = 'INVARIANT';
}
