// How the simulated kernel fails a call: it throws SimErrno, which SimHost turns into the
// HostError of the system call being made (with its fd, path and ioctl name).

import type { ErrnoCode } from '@vmmkit/core';

/** A kernel function returned -errno. `detail` explains why, for debugging only (the kernel says nothing). */
export class SimErrno extends Error {
  override readonly name = 'SimErrno';
  constructor(
    readonly code: ErrnoCode,
    readonly detail?: string,
  ) {
    super(detail ? `${code}: ${detail}` : code);
  }
}

/** Fail the current kernel call with `code`. */
export function fail(code: ErrnoCode, detail?: string): never {
  throw new SimErrno(code, detail);
}
