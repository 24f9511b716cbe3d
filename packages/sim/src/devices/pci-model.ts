// The contract between a PCI device model and the simulated kernel: what vfio-pci sees of the
// hardware (config space, BARs, interrupts, reset) and what the hardware can do (DMA, raise
// interrupts) through its bus.

import type { SimDmaFault } from '../iommu/dma-target.js';
import type { Census } from '../kernel/census.js';
import type { SimFile } from '../kernel/sim-file.js';
import type { MemoryBacking } from '../memory/backing.js';
import type { UserMemory } from '../memory/user-memory.js';

/** A BAR of the device. */
export interface SimBar {
  readonly index: number;
  readonly size: bigint;
  readonly type: 'mem32' | 'mem64' | 'io';
  readonly prefetchable?: boolean;
  /**
   * Where user space may mmap the BAR (VFIO_REGION_INFO_FLAG_MMAP, with a sparse-mmap
   * capability for partial areas). Registers with side effects stay out of it, so their
   * accesses reach the model through read/write.
   */
  readonly mmapAreas?: readonly { readonly offset: bigint; readonly size: bigint }[];
}

/**
 * A BAR register whose writes the device may hear through an eventfd instead of `barWrite`
 * messages: a doorbell or notify register, where what matters is that the guest wrote.
 */
export interface SimIoeventfdRegister {
  readonly bar: number;
  readonly offset: number;
  /** The write width that signals. */
  readonly size: 1 | 2 | 4 | 8;
  /**
   * Only writes of this value signal; absent: a write of any value does, and the model gets
   * `barWrite` with the value 0 (the value written is lost on the way, as with KVM's
   * datamatch-free ioeventfds for virtio notify registers, so the model must not depend on it).
   */
  readonly datamatch?: bigint;
}

/** An interrupt the device raises. */
export type SimIrq = { readonly kind: 'intx' } | { readonly kind: 'msi' | 'msix'; readonly vector: number };

/** What the device model can do on its bus. */
export interface SimDeviceBus {
  /** DMA write through the device's IO page table. Throws SimDmaFault and writes nothing on a fault. */
  dmaWrite(iova: bigint, data: Uint8Array): void;
  /** DMA read through the device's IO page table. Throws SimDmaFault on a fault. */
  dmaRead(iova: bigint, length: number): Uint8Array;
  /** Signal an interrupt (delivered by vfio-pci to the eventfd configured for it, if any). */
  raiseIrq(irq: SimIrq): void;
  /** De-assert INTx. */
  lowerIntx(): void;
  /** Virtual time in milliseconds. */
  now(): number;
  /**
   * DMA the device itself started and the IOMMU refused, newest last. A model appends the
   * SimDmaFault it caught from dmaWrite/dmaRead here and carries on, as hardware would.
   */
  readonly faults: SimDmaFault[];
}

/** A device's migratable state (VFIO migration v2 moves it through the data fd). */
export interface SimMigratableState {
  /** Serialize the whole device state. */
  save(): Uint8Array;
  /** Load a state produced by save(); throws SimErrno('EINVAL') on bad input, changing nothing. */
  load(state: Uint8Array): void;
  /** Changes whenever the state changes, so precopy can tell whether there is new data. */
  readonly version: number;
  /**
   * The migration driver stops (false) and restarts (true) the device: stopped in STOP,
   * STOP_COPY, RESUMING and ERROR, where it must not DMA, raise interrupts or change its
   * state; running otherwise. A reset leaves the device running.
   */
  setRunning(running: boolean): void;
}

/** A PCI device model. */
export interface SimPciModel {
  /** The model's name, e.g. `'edu'`. */
  readonly kind: string;
  /**
   * The device's configuration space (256 or 4096 bytes) as the hardware holds it. The kernel
   * writes it too: vfio-pci clears Bus Master Enable at open and sets the MSI / MSI-X enable bit
   * of the capability when the user enables those vectors, so a model consults its capability to
   * pick MSI-X, MSI or INTx (see config-space.ts).
   */
  readonly config: Uint8Array;
  readonly bars: readonly SimBar[];
  /**
   * Interrupts: INTx pin present, MSI and MSI-X vector counts, and the VFIO IRQ indexes whose
   * VFIO_DEVICE_GET_IRQ_INFO the device's driver refuses with EINVAL (mdev drivers answer only
   * for the interrupts they have: Linux's mtty sample for INTx and MSI alone).
   */
  readonly interrupts: {
    readonly intx: boolean; readonly msi: number; readonly msix: number; readonly infoRefused?: readonly number[];
  };
  /** Register read of `size` bytes at `offset` of a BAR (through the VFIO region's read). */
  barRead(bar: number, offset: number, size: 1 | 2 | 4 | 8): bigint;
  /** Register write (through the VFIO region's write). */
  barWrite(bar: number, offset: number, size: 1 | 2 | 4 | 8, value: bigint): void;
  /**
   * The memory behind a BAR's mmap areas, addressed by BAR offset (only the mmap areas are
   * ever touched through it). Required when a BAR has mmap areas.
   */
  barMemory?(bar: number): MemoryBacking | undefined;
  /**
   * Optional: from now on keep BAR `bar`'s memory (what its mmap areas show) in `bytes`, which
   * has the BAR's size, carrying the current contents over. A device server outside the
   * simulated kernel passes memory it shares with its client through a file (a memfd).
   */
  shareBarMemory?(bar: number, bytes: Uint8Array): void;
  /**
   * Optional: registers a device server may let a client reach through eventfds (vfio-user's
   * DEVICE_GET_REGION_IO_FDS, which a VMM registers as KVM ioeventfds). Each signal becomes one
   * `barWrite(bar, offset, size, datamatch ?? 0n)` (the eventfd counts the guest's writes, so
   * none is lost, but the written value does not travel: declare registers whose writes carry
   * no value, or a `datamatch`). The registers must lie outside the BAR's mmap areas, whose
   * writes never reach the model.
   */
  readonly ioeventfds?: readonly SimIoeventfdRegister[];
  /** A config space write reached the hardware (after vfio-pci's virtualization). */
  configWritten?(offset: number, size: number): void;
  /** Function level reset: back to power-on state. */
  reset(): void;
  /**
   * The device has its own VFIO driver's reset, as mdev drivers do (mtty_reset): it reports no
   * VFIO_DEVICE_FLAGS_RESET and is not reset when opened or closed, yet VFIO_DEVICE_RESET
   * succeeds and calls `reset` (and the migration driver's reset).
   */
  readonly driverReset?: boolean;
  /** Let device time pass (timers, traffic). */
  advance?(ms: number): void;
  /** Connect the model to its bus; called once when the device is created. */
  connect(bus: SimDeviceBus): void;
  /** Migration state, for models that support VFIO migration. */
  readonly migration?: SimMigratableState;
  /**
   * The model's own migration driver, for a model that mirrors a real driver's migration
   * stream and quirks (Linux's mtty sample); without it the generic driver (mlx5-like) is used.
   */
  migrationDriver?(context: SimMigrationContext): SimMigrationDriver;
}

/** What a model's own migration driver gets from the simulated kernel. */
export interface SimMigrationContext {
  /** The VFIO_MIGRATION_* flags the device was configured with. */
  readonly flags: number;
  /** The caller's address space, for ioctl arguments passed by address. */
  readonly memory: UserMemory;
  /** Where data fds are counted ('data_fd'). */
  readonly census: Census;
}

/** A VFIO migration v2 driver as vfio_main.c calls it (struct vfio_migration_ops and friends). */
export interface SimMigrationDriver {
  /** VFIO_MIGRATION_* flags. */
  readonly flags: number;
  /** The current VFIO_DEVICE_STATE_*. */
  readonly state: number;
  /**
   * migration_set_state: walk the arcs to `target` (SimErrno on a refused arc). Returns the
   * file of the session the walk started, if any; the fd table takes its own reference.
   */
  setState(target: number): SimFile | undefined;
  /** migration_get_data_size: the bytes STOP_COPY would stream now. */
  dataSize(): bigint;
  /** The device was opened (open_device). */
  open(): void;
  /** The device was closed (close_device). */
  close(): void;
  /** The device was reset (VFIO_DEVICE_RESET, or the reset at open). */
  resetDone(): void;
}
