// A VFIO device as every backend and device model sees it (QEMU's VFIODevice): how to find it,
// the fd once attached, its container, and the dirty-tracking facts migration decides by.

import { InvariantError } from '../errors/vmm-error-base.js';
import type { VfioError } from '../errors/vmm-error.js';
import type { VmmObject } from '../vmm/vmm-object.js';
import type { HostIommuDevice } from './host-iommu-device.js';
import type { VfioContainerBase } from './vfio-container-base.js';
import type { VfioDeviceIo } from './vfio-device-io.js';
import { containerOf } from './vfio-membership.js';

/** on/off/auto, as QEMU's OnOffAuto properties. */
export type OnOffAuto = 'on' | 'off' | 'auto';

/** What locates a VFIO device: exactly one of a sysfs path or a pre-opened fd (with iommufd). */
export interface VfioDeviceLocation {
  /** The device's sysfs directory, e.g. `/sys/bus/pci/devices/0000:00:03.0` or an mdev's. */
  readonly sysfsdev?: string;
  /** A device cdev fd opened by someone else (fd passing); only with the iommufd backend. */
  readonly fd?: number;
}

/** VFIO_DEVICE_GET_INFO, as the device reported it at attach. */
export interface VfioDeviceInfo {
  readonly flags: number;
  readonly numRegions: number;
  readonly numIrqs: number;
}

export class VfioDevice {
  /** The name the kernel knows the device by: the sysfs basename (BDF or UUID), or `VFIO_FD<n>`. */
  readonly name: string;
  readonly sysfsdev: string | undefined;
  /** The device fd; -1 until attached (unless one was passed in). */
  fd: number;
  /** Whether the fd was passed in (the caller owns it until attach; vmmkit closes it on detach). */
  readonly fdPassed: boolean;
  /** A mediated device: no IOMMU of its own, no HostIommuDevice, attached to the IOAS directly. */
  mdev = false;
  /** The object the device attaches through, for backends that have one (its `iommufd`). */
  iommufd: VmmObject | undefined;
  /** The host IOMMU behind the device, realized during attach (not for mdevs). */
  hostIommuDevice: HostIommuDevice | undefined;
  info: VfioDeviceInfo | undefined;
  /** The device can log its own DMA writes (device dirty tracking): probed by the device model. */
  dmaLoggingSupported = false;
  /** x-device-dirty-page-tracking: 'off' forbids using device DMA logging. */
  deviceDirtyPageTracking: OnOffAuto = 'auto';
  /** The IOMMU behind the device tracks dirty pages for it (set by the backend at attach). */
  iommuDirtyTracking = false;
  /** enable-migration: 'off' blocks migration, 'on' migrates even without dirty tracking. */
  enableMigration: OnOffAuto = 'auto';
  /** x-pre-copy-dirty-page-tracking: false leaves dirty syncs to the stop-copy phase. */
  preCopyDirtyPageTracking = true;
  /** VFIO_MIGRATION_* flags the device reported (VFIO_DEVICE_FEATURE_MIGRATION); 0 when it cannot migrate. */
  migrationFlags = 0;
  #io: VfioDeviceIo | undefined;

  /**
   * @param io makes the device's I/O, chosen by the device type as QEMU's realize chooses
   *   io_ops: `(d) => new VfioKernelDeviceIo(host, d)` for a device the kernel serves, messages
   *   for a vfio-user one. Without it the device has no `io` (a bare device a backend test attaches).
   */
  constructor(location: VfioDeviceLocation, name?: string, io?: (device: VfioDevice) => VfioDeviceIo) {
    this.sysfsdev = location.sysfsdev;
    this.fd = location.fd ?? -1;
    this.fdPassed = location.fd !== undefined;
    this.name = name ?? (location.sysfsdev ? basename(location.sysfsdev) : `VFIO_FD${location.fd}`);
    this.#io = io?.(this);
  }

  /**
   * How the device's regions, interrupts, features and reset are reached (ioctls on the fd, or
   * vfio-user messages). Device models and migration use only this; the kernel's needs the
   * device attached (its fd open).
   * @throws InvariantError for a device made without one.
   */
  get io(): VfioDeviceIo {
    if (!this.#io) throw new InvariantError(`${this.name}: the device was made without an I/O (VfioDevice's io argument)`);
    return this.#io;
  }

  /**
   * Why the device cannot migrate when it reports no migration flags, after its name in the
   * blocker: QEMU's words for a device the kernel serves; a vfio-user device names its server.
   */
  get noMigrationReason(): string {
    return 'VFIO migration is not supported in kernel';
  }

  /** The container the device is attached to: its membership is the container's to keep. */
  get container(): VfioContainerBase | undefined {
    return containerOf(this);
  }

  /**
   * Why the device stopped working for good (a vfio-user server that died, stalled or broke the
   * protocol); undefined while it works, and always for a device the kernel serves.
   */
  get failure(): VfioError | undefined {
    return undefined;
  }

  /** VFIO_DEVICE_FLAGS_RESET was reported. */
  get resetWorks(): boolean {
    return ((this.info?.flags ?? 0) & 1) !== 0;
  }
}

function basename(path: string): string {
  return path.replace(/\/+$/, '').split('/').pop() ?? path;
}
