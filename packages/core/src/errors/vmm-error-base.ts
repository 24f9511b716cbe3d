// The base of every error vmmkit throws on purpose, in a file of its own so that HostError (in
// host/) and the errors that wrap it (in errors/) can both extend it without an import cycle.

/**
 * Base of every error vmmkit throws on purpose. `code` tells the kinds apart (`'CONFIG'`,
 * `'VFIO'`, `'HOST'`, ...); where a system call failed, `errno` is its errno name (`'EBUSY'`),
 * on the error itself or on the HostError in its `cause` chain (`errnoOf`).
 */
export abstract class VmmError extends Error {
  abstract readonly code: string;
}
