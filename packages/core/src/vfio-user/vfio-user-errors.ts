// The typed errors of the vfio-user protocol module: a message that breaks the specification,
// a peer that answered with an error, and a transport whose socket failed.

import { VmmError } from '../errors/vmm-error-base.js';
import { ERRNO, errnoName } from '../host/errno.js';
import { vfioUserCommandName } from './constants.js';

/**
 * A vfio-user message does not follow the specification: a size, count or fd count that does
 * not match the message, an unknown command, malformed capabilities. `errno` is what a server
 * answers the command with (EINVAL unless the message is too large: E2BIG).
 */
export class VfioUserProtocolError extends VmmError {
  override readonly name = 'VfioUserProtocolError';
  readonly code = 'VFIO_USER_PROTOCOL';
  /** The command's name (`VFIO_USER_DMA_MAP`), or `header` for a bad header. */
  readonly command: string;
  /** The errno name to report to the peer, `'EINVAL'` by default. */
  readonly errno: string;

  constructor(command: number | 'header', reason: string, errno: 'EINVAL' | 'E2BIG' | 'ENOTSUP' = 'EINVAL') {
    const name = command === 'header' ? 'header' : vfioUserCommandName(command);
    super(`vfio-user ${name}: ${reason}`);
    this.command = name;
    this.errno = errno;
  }

  /** The errno number for the reply header. */
  get errnoNumber(): number {
    return ERRNO[this.errno as keyof typeof ERRNO];
  }
}

/** The peer answered a command with an error reply. */
export class VfioUserReplyError extends VmmError {
  override readonly name = 'VfioUserReplyError';
  readonly code = 'VFIO_USER_REPLY';
  /** The errno name the peer reported (`'E0'` when it reported none). */
  readonly errno: string;

  constructor(readonly command: number, readonly errnoNumber: number) {
    const name = errnoNumber === 0 ? 'E0' : errnoName(errnoNumber);
    super(`vfio-user ${vfioUserCommandName(command)} failed at the peer: ${name}`);
    this.errno = name;
  }
}

/**
 * A vfio-user transport failed: its socket call failed (the HostError is the `cause`), or the
 * peer closed the connection. Names the socket path and what was being done.
 */
export class VfioUserTransportError extends VmmError {
  override readonly name = 'VfioUserTransportError';
  readonly code = 'VFIO_USER_TRANSPORT';

  /** @param endpoint the socket path (or `socketpair`, `in-process`). */
  constructor(readonly endpoint: string, what: string, options?: ErrorOptions) {
    const cause = options?.cause instanceof Error ? `: ${options.cause.message}` : '';
    super(`vfio-user socket ${endpoint}: ${what}${cause}`, options);
  }

  /** The errno name of the failed socket call, when a system call failed. */
  get errno(): string | undefined {
    const cause = this.cause as { errno?: unknown } | undefined;
    return typeof cause?.errno === 'string' ? cause.errno : undefined;
  }
}
