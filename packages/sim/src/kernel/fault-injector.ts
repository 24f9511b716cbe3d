// Fault injection: fail the nth next call of an ioctl with a chosen errno, before it changes anything.

import { errnoNumber, type ErrnoCode, type FdKind } from '@vmmkit/core';

/** A fault to inject: the `nth` next call (default 1) of `ioctl` fails with `errno`. */
export interface SimFault {
  /** The ioctl request number. */
  readonly ioctl: number;
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

interface Armed {
  readonly fault: SimFault;
  remaining: number;
}

/** Armed faults, consumed in the order they fire. */
export class FaultInjector {
  #armed: Armed[] = [];

  arm(fault: SimFault): void {
    errnoNumber(fault.errno); // refuse a misspelt errno now, not when it fires
    const nth = fault.nth ?? 1;
    if (!Number.isInteger(nth) || nth < 1) throw new RangeError(`injectFault: nth must be a positive integer, got ${nth}`);
    this.#armed.push({ fault, remaining: nth });
  }

  /** Count a call; returns the errno to fail it with, if an armed fault fires now. */
  check(request: number, kind: FdKind | undefined): ErrnoCode | undefined {
    let fired: ErrnoCode | undefined;
    for (const a of this.#armed) {
      if (a.fault.ioctl !== request || (a.fault.on !== undefined && a.fault.on !== kind)) continue;
      a.remaining -= 1;
      if (a.remaining === 0 && fired === undefined) fired = a.fault.errno as ErrnoCode;
    }
    this.#armed = this.#armed.filter((a) => a.remaining > 0);
    return fired;
  }

  /** Faults armed and not yet fired. */
  get pending(): number {
    return this.#armed.length;
  }

  clear(): void {
    this.#armed = [];
  }
}
