// Fault injection: fail the nth next call of a system call (one ioctl, every ioctl, or a read, an
// open, ...) with a chosen errno, before it changes anything; and a count of the calls made,
// so that a test can fail the 1st, 2nd, ... Nth call of a step without listing them.

import { ArgumentError, errnoNumber, type ErrnoCode } from '@vmmkit/core';
import { type FdKind } from '@vmmkit/core/uapi';

/** The system calls of the host-kernel port that faults can be injected into. */
export type SimSyscall = 'ioctl' | 'open' | 'close' | 'read' | 'write' | 'pread' | 'pwrite' | 'mmap' | 'eventfd' | 'readlink' | 'readdir'
  | 'dup' | 'memfd_create' | 'ftruncate';

/**
 * A fault to inject: the `nth` next matching call (default 1) fails with `errno`. A call matches
 * when it is `syscall` (default `ioctl`), and, for ioctls, `ioctl` when given (any ioctl when
 * not), on an fd of kind `on` when given.
 */
export interface SimFault {
  /** The system call, or `'any'` for every one; default `'ioctl'`. */
  readonly syscall?: SimSyscall | 'any';
  /** The ioctl request number; leave it out to count every ioctl. */
  readonly ioctl?: number;
  /** The errno name to fail with, e.g. `'EIO'`. */
  readonly errno: string;
  /** Which of the next calls fails: 1 is the very next one. */
  readonly nth?: number;
  /**
   * Only count calls on fds of this kind. VFIO reuses numbers between container and device fds,
   * so `VFIO_IOMMU_MAP_DMA` and `VFIO_DEVICE_PCI_HOT_RESET` are told apart this way.
   */
  readonly on?: FdKind;
}

/** One call as the injector saw it. */
export interface SimCall {
  readonly syscall: SimSyscall;
  readonly request?: number;
  readonly kind?: FdKind;
}

interface Armed {
  readonly fault: SimFault;
  remaining: number;
}

/** Armed faults, consumed in the order they fire, and the count of calls seen. */
export class FaultInjector {
  #armed: Armed[] = [];
  readonly #counts = new Map<SimSyscall, number>();
  #fired: SimCall | undefined;

  arm(fault: SimFault): void {
    errnoNumber(fault.errno); // refuse a misspelt errno now, not when it fires
    const nth = fault.nth ?? 1;
    if (!Number.isInteger(nth) || nth < 1) throw new ArgumentError(`injectFault: nth must be a positive integer, got ${nth}`);
    this.#armed.push({ fault, remaining: nth });
  }

  /** Count a call; returns the errno to fail it with, if an armed fault fires now. */
  check(call: SimCall): ErrnoCode | undefined {
    this.#counts.set(call.syscall, (this.#counts.get(call.syscall) ?? 0) + 1);
    if (this.#armed.length === 0) return undefined;
    let fired: ErrnoCode | undefined;
    for (const a of this.#armed) {
      if (!matches(a.fault, call)) continue;
      a.remaining -= 1;
      if (a.remaining === 0 && fired === undefined) fired = a.fault.errno as ErrnoCode;
    }
    this.#armed = this.#armed.filter((a) => a.remaining > 0);
    if (fired) this.#fired = call;
    return fired;
  }

  /** The call the last fault fired on. */
  get lastFired(): SimCall | undefined {
    return this.#fired;
  }

  /** Calls of `syscall` made so far (default: ioctls; `'any'`: every call). */
  count(syscall: SimSyscall | 'any' = 'ioctl'): number {
    if (syscall === 'any') return [...this.#counts.values()].reduce((a, b) => a + b, 0);
    return this.#counts.get(syscall) ?? 0;
  }

  /** Faults armed and not yet fired. */
  get pending(): number {
    return this.#armed.length;
  }

  clear(): void {
    this.#armed = [];
  }
}

function matches(fault: SimFault, call: SimCall): boolean {
  const syscall = fault.syscall ?? 'ioctl';
  if (syscall !== 'any' && syscall !== call.syscall) return false;
  if (fault.ioctl !== undefined && fault.ioctl !== call.request) return false;
  return fault.on === undefined || fault.on === call.kind;
}
