// A device the guest reaches as a PCI function: its configuration space and its BARs. The VM's
// PCI host bridge (an accelerator's, where guest code runs) turns guest config cycles and
// accesses to the BAR addresses the guest programmed into these calls.

import type { HostMapping } from '../host/host-kernel.js';
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
  onMessageInterrupt?(deliver: (message: MsiMessage) => void): () => void;
  /**
   * Optional: the parts of BAR `bar` that are memory the VMM has mapped (a vfio-pci BAR's mmap
   * areas), which an accelerator may let the guest reach without exits (KVM memslots). The
   * function owns the mappings; the list is valid until the function is unrealized. Accesses
   * outside these parts go through `barRead`/`barWrite`.
   */
  barMemory?(bar: number): readonly PciBarMemory[];
  /**
   * Optional: eventfds the function wants signalled for guest writes to BAR `bar` (a vfio-user
   * server's ioeventfds, VFIO_USER_DEVICE_GET_REGION_IO_FDS), which an accelerator may register
   * so those writes reach the device without the VMM (KVM ioeventfds). The function owns the
   * fds; the list is valid until the function is unrealized. An accelerator that does not
   * register them still delivers the writes through `barWrite`.
   */
  barEventfds?(bar: number): readonly PciBarEventfd[];
  /**
   * Optional: offered by an accelerator that can deliver MSIs straight from the function's
   * interrupt eventfds (KVM irqfds with MSI routes), or withdrawn with `undefined` (before the
   * accelerator goes). The function connects its enabled, unmasked vectors through the router,
   * updates them when the guest reprograms them, and disconnects exactly the routes it made when
   * a vector is masked or disabled, when the router is withdrawn, or when it is unrealized; a
   * vector the router refuses is delivered through `onMessageInterrupt` as before.
   */
  useMsiRouter?(router: MsiRouter | undefined): void;
}

/** A message-signalled interrupt as the guest programmed it. */
export interface MsiMessage {
  readonly address: bigint;
  readonly data: number;
}

/** Part of a BAR backed by memory mapped in this process. */
export interface PciBarMemory {
  /** Offset in the BAR (page aligned) and size (a multiple of the page size). */
  readonly offset: bigint;
  readonly size: bigint;
  /** The function's mapping of that part (its `addr` is what a memslot maps). */
  readonly mapping: HostMapping;
}

/** An eventfd to signal for guest writes at `offset` of a BAR. */
export interface PciBarEventfd {
  readonly offset: bigint;
  /** The width of the writes that signal (1, 2, 4, 8). */
  readonly size: PciBarAccessSize;
  /** Only writes of this value signal; absent: any value. */
  readonly datamatch?: bigint;
  readonly fd: number;
}

/** Delivers MSIs from eventfds without the VMM in the loop (an accelerator's irqfds). */
export interface MsiRouter {
  /**
   * Let each signal of `eventfd` deliver `message` to the guest's CPUs.
   * @throws VmmError naming why when it cannot (the caller then delivers the vector itself).
   */
  connect(eventfd: number, message: MsiMessage): MsiRoute;
}

/** One eventfd routed to one MSI. */
export interface MsiRoute {
  /** The guest reprogrammed the vector: deliver the new message from now on. */
  update(message: MsiMessage): void;
  /** Stop delivering; signals after this stay counted in the eventfd. Idempotent. */
  disconnect(): void;
}

/** Whether `device` is a PCI function the guest can reach through config space and BARs. */
export function isPciFunction(device: VmmDevice): device is PciFunction {
  const d = device as Partial<PciFunction>;
  return typeof d.configRead === 'function' && typeof d.configWrite === 'function' && typeof d.barRead === 'function'
    && typeof d.barWrite === 'function' && typeof d.barSize === 'function';
}
