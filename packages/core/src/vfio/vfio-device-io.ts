// How a VFIO device's regions, interrupts, features and reset are reached (QEMU's
// VFIODeviceIOOps): ioctls and pread/pwrite on the device fd for the kernel backends, messages
// for vfio-user. A device model (vfio-pci) and migration talk to a device only through this, so
// one device model runs over every backend.

import type { VfioDeviceInfo } from './vfio-device.js';
import type { VfioMigDataSession } from './mig-data-session.js';
import type { VfioRegionInfo } from './region-info.js';

/** An IOVA range a device logs its DMA writes in. */
export interface DmaLoggingRange {
  readonly iova: bigint;
  readonly length: bigint;
}

/** One IRQ index (VFIO_DEVICE_GET_IRQ_INFO). */
export interface VfioIrqInfo {
  readonly index: number;
  /** VFIO_IRQ_INFO_* (EVENTFD, MASKABLE, AUTOMASKED, NORESIZE). */
  readonly flags: number;
  /** How many interrupts the index has (vectors for MSI/MSI-X; 0 when absent). */
  readonly count: number;
}

/** One VFIO_DEVICE_SET_IRQS request. */
export interface VfioIrqSet {
  readonly index: number;
  readonly start: number;
  readonly count: number;
  /** VFIO_IRQ_SET_DATA_* | VFIO_IRQ_SET_ACTION_*. */
  readonly flags: number;
  /**
   * With VFIO_IRQ_SET_DATA_EVENTFD: one fd per interrupt from `start` (-1 unwires it). The fds
   * stay the caller's: the kernel takes its own reference, vfio-user sends copies.
   */
  readonly eventfds?: readonly number[];
}

/**
 * An eventfd a device wants signalled for writes to part of one of its regions (a vfio-user
 * server's ioeventfd sub-region), with KVM_IOEVENTFD's fields.
 */
export interface VfioRegionIoEventfd {
  /** Offset in the region. */
  readonly offset: bigint;
  /** The write width that signals: 1, 2, 4, 8, or 0 for any width. */
  readonly size: number;
  /** Only writes of this value signal; absent: any value. */
  readonly datamatch?: bigint;
  /** Port I/O rather than memory (KVM_IOEVENTFD_FLAG_PIO). */
  readonly pio: boolean;
  readonly fd: number;
}

/** How a region write may complete. */
export interface VfioRegionWriteOptions {
  /**
   * The write may complete before the device has it, as a PCI memory write is posted: over
   * vfio-user it goes with NO_REPLY where the specification allows it (never config space), and
   * a failure at the device is not reported (as a posted write's master abort is not); accesses
   * after it still see it, since the server handles messages in order. The kernel's writes
   * complete at once either way.
   */
  readonly posted?: boolean;
}

/**
 * The I/O of one attached device. Every method is asynchronous because over vfio-user the
 * answer is a message that comes back through the event loop; the kernel's implementation
 * completes synchronously underneath. Every failure is a `VfioError` naming the device, the step
 * and, where one failed, the ioctl and its errno.
 */
export interface VfioDeviceIo {
  /** VFIO_DEVICE_GET_INFO: flags and the numbers of regions and IRQ indexes. */
  deviceInfo(): Promise<VfioDeviceInfo>;

  /**
   * VFIO_DEVICE_GET_REGION_INFO with its capabilities. When parts of the region may be mmapped,
   * `mmapFd` is the file to map them from, at `offset` + the area's offset: the device fd for
   * the kernel, the server's file for vfio-user. That fd belongs to the device's I/O (it is
   * closed when the device detaches); a caller maps it but never closes it.
   */
  regionInfo(index: number): Promise<VfioRegionInfo>;

  /**
   * Optional (vfio-user's DEVICE_GET_REGION_IO_FDS; the kernel has no such thing): the eventfds
   * the device wants signalled for writes to parts of region `index`, which a VMM may register as
   * KVM ioeventfds so those writes reach the device without it. Resolves to none when the device
   * offers none there, or refuses the question (servers predating it). The fds are the caller's
   * from then on (entries may share one: close each distinct fd once).
   * @throws VfioError naming the device when the answer breaks the protocol or the connection fails.
   */
  regionIoEventfds?(index: number): Promise<VfioRegionIoEventfd[]>;

  /** Read `count` bytes at `offset` into region `index` (pread on the fd, or REGION_READ). */
  regionRead(index: number, offset: bigint, count: number): Promise<Uint8Array>;

  /** Write `data` at `offset` into region `index` (pwrite on the fd, or REGION_WRITE). */
  regionWrite(index: number, offset: bigint, data: Uint8Array, options?: VfioRegionWriteOptions): Promise<void>;

  /** VFIO_DEVICE_GET_IRQ_INFO for one index. */
  irqInfo(index: number): Promise<VfioIrqInfo>;

  /** VFIO_DEVICE_SET_IRQS. */
  setIrqs(set: VfioIrqSet): Promise<void>;

  /** VFIO_DEVICE_RESET (function-level reset; hot reset stays the backend's). */
  reset(): Promise<void>;

  /**
   * VFIO_DEVICE_FEATURE with `flags` (feature number | GET/SET/PROBE) and `payload`; resolves to
   * the payload as the device left it. The error keeps the errno (ENOTTY: no such feature).
   */
  feature(flags: number, payload?: Uint8Array): Promise<Uint8Array>;

  /**
   * SET VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE: move the device to `state` (the device walks the
   * arcs itself). Resolves to the data transfer session the change started, or undefined when
   * it started none (it continued the one open, or the new state has none). The caller owns
   * the session: the kernel's holds the data fd it returned; vfio-user's reads and writes with
   * MIG_DATA_READ / MIG_DATA_WRITE. A session ends in the device when a change leaves its
   * states or the device is reset; the caller still closes it.
   */
  setMigState(state: number): Promise<VfioMigDataSession | undefined>;

  /**
   * VFIO_DEVICE_FEATURE_DMA_LOGGING_START of `ranges` at `pageSize` granularity (the kernel
   * reads the range table through a user pointer; vfio-user sends it in the message).
   */
  dmaLoggingStart(ranges: readonly DmaLoggingRange[], pageSize: number): Promise<void>;

  /** VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP. */
  dmaLoggingStop(): Promise<void>;

  /**
   * VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT of [iova, iova + length): sets the bit of every page
   * the device wrote since the last report into `bitmap` (bit 0 = `iova`, one bit per
   * `pageSize`, whole u64 words; bits already set stay set) and clears them in the device. The
   * kernel writes through a user pointer to these bytes; vfio-user's reply carries the bitmap,
   * or'ed in here, in as many requests as the negotiated max_bitmap_size needs.
   */
  dmaLoggingReport(iova: bigint, length: bigint, pageSize: number, bitmap: Uint8Array): Promise<void>;
}
