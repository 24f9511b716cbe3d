// The error a command handler fails with: an errno for the reply and the reason, for the log.

import { VmmError, type ErrnoCode } from '@vmmkit/core';

/** A client command the device refuses; the reply carries `errno`. */
export class VfioUserRequestError extends VmmError {
  override readonly name = 'VfioUserRequestError';
  readonly code = 'VFIO_USER_REQUEST';

  constructor(readonly errno: ErrnoCode, reason: string, options?: ErrorOptions) {
    super(`${errno}: ${reason}`, options);
  }
}

/** Refuse the command being handled. */
export function refuse(errno: ErrnoCode, reason: string): never {
  throw new VfioUserRequestError(errno, reason);
}
