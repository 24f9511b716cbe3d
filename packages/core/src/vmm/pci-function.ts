// A device the guest reaches as a PCI function: its configuration space and its BARs. The VM's
// PCI host bridge (an accelerator's, where guest code runs) turns guest config cycles and
// accesses to the BAR addresses the guest programmed into these calls.

import type { VmmDevice } from './vmm-device.js';

/** Access widths of a BAR. */
export type PciBarAccessSize = 1 | 2 | 4 | 8;

/**
 * A PCI function's guest-visible side. Each accessor may answer synchronously or with a
 * promise (a device served over a socket answers later); callers always await them.
 */
export interface PciFunction extends VmmDevice {
  /** The guest reads `size` bytes of config space at `offset` (aligned to `size`). */
  configRead(offset: number, size: 1 | 2 | 4): number | Promise<number>;
  /** The guest writes config space. */
  configWrite(offset: number, size: 1 | 2 | 4, value: number): void | Promise<void>;
  /** The guest reads `size` bytes at `offset` of BAR `bar`, little-endian. */
  barRead(bar: number, offset: number, size: PciBarAccessSize): bigint | Promise<bigint>;
  /** The guest writes a BAR. */
  barWrite(bar: number, offset: number, size: PciBarAccessSize, value: bigint): void | Promise<void>;
  /** The size of BAR `bar` (0-5) in bytes; 0 when the function has no such BAR. */
  barSize(bar: number): bigint;
  /**
   * Optional: hear the function's message-signalled interrupts (MSI, MSI-X) as the address and
   * data the guest programmed, for whatever delivers them to the guest's CPUs (an in-kernel
   * interrupt controller). Returns what stops listening.
   */
  onMessageInterrupt?(deliver: (message: { readonly address: bigint; readonly data: number }) => void): () => void;
}

/** Whether `device` is a PCI function the guest can reach through config space and BARs. */
export function isPciFunction(device: VmmDevice): device is PciFunction {
  const d = device as Partial<PciFunction>;
  return typeof d.configRead === 'function' && typeof d.configWrite === 'function' && typeof d.barRead === 'function'
    && typeof d.barWrite === 'function' && typeof d.barSize === 'function';
}
