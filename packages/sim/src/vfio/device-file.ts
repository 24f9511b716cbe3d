// An open VFIO device: from a group (VFIO_GROUP_GET_DEVICE_FD) or a cdev (/dev/vfio/devices/vfio<N>).
// The cdev's iommufd ioctls (bind, attach, detach) are handled by device-iommufd.ts; everything
// else (vfio_device_fops and vfio-pci's ioctls, read/write, mmap) is dispatched from here.

import {
  VFIO_DEVICE_FEATURE, VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
  VFIO_DEVICE_GET_REGION_INFO, VFIO_DEVICE_PCI_HOT_RESET, VFIO_DEVICE_RESET, VFIO_DEVICE_SET_IRQS,
} from '@vmmkit/core/uapi';
import type { IommufdFile } from '../iommufd/iommufd-file.js';
import type { SimDevice } from '../kernel/sim-device.js';
import type { SimKernel } from '../kernel/sim-kernel.js';
import { fail } from '../kernel/sim-errno.js';
import { SimFile, type FileMapping, type IoctlArg } from '../kernel/sim-file.js';
import { UserArg } from '../kernel/user-arg.js';
import { vfioPciCore, type VfioPciCore } from './device-core.js';
import { deviceFeature } from './device-feature.js';
import { getDeviceInfo, getRegionInfo } from './device-info.js';
import { deviceIommufdIoctl, isDeviceIommufdIoctl } from './device-iommufd.js';
import { deviceReset, hotReset, hotResetInfo } from './device-reset.js';
import { getIrqInfo, setIrqs } from './irq-set.js';
import { regionMmap } from './region-mmap.js';
import { regionAccess } from './region-rw.js';

/** A device fd's iommufd binding: the context and the devid it gave. */
export interface DeviceBinding {
  readonly ctx: IommufdFile;
  readonly devid: number;
}

export class VfioDeviceFile extends SimFile {
  readonly kind = 'vfio-device' as const;
  /** Cleanups registered by whoever opened, bound or configured the device; run newest first on release. */
  readonly releaseHooks: (() => void)[] = [];
  /** vfio-pci's state of the device, shared with every other fd open on it. */
  readonly core: VfioPciCore;
  #opened = false;
  #iommufd: DeviceBinding | undefined;
  /** The file position read(2) and write(2) use. */
  #pos = 0n;

  constructor(
    readonly kernel: SimKernel,
    readonly device: SimDevice,
    readonly via: 'group' | 'cdev',
  ) {
    super();
    this.core = vfioPciCore(kernel, device);
  }

  /** Whether vfio_df_open succeeded: the device is usable through this fd (access_granted). */
  get opened(): boolean {
    return this.#opened;
  }

  /**
   * The iommufd this cdev fd is bound to (VFIO_DEVICE_BIND_IOMMUFD), and its devid. Binding opens
   * the device, as vfio_df_open does inside the bind.
   */
  get iommufd(): DeviceBinding | undefined {
    return this.#iommufd;
  }

  set iommufd(binding: DeviceBinding | undefined) {
    this.#iommufd = binding;
    if (binding && !this.#opened) this.open();
  }

  /**
   * vfio_df_open: open the device for this fd, enabling it on its first open (Bus Master Enable
   * cleared, function reset, interrupts off, migration RUNNING). Until then every other
   * ioctl, read, write and mmap fails with EINVAL. A device opened through its cdev cannot be
   * opened a second time (EINVAL). Undone when the file is released.
   * (VFIO_GROUP_GET_DEVICE_FD opens before installing the fd; a cdev bind opens through `iommufd`.)
   */
  open(): void {
    if (this.#opened) fail('EINVAL', 'the device fd is already open');
    this.core.open(this);
    this.#opened = true;
  }

  override ioctl(request: number, arg: IoctlArg): number {
    if (isDeviceIommufdIoctl(request)) return deviceIommufdIoctl(this, request, arg);
    this.#checkAccess();
    const user = (): UserArg => UserArg.of(arg, this.kernel.memory);
    switch (request) {
      case VFIO_DEVICE_GET_INFO: return getDeviceInfo(this.core, user());
      case VFIO_DEVICE_GET_REGION_INFO: return getRegionInfo(this.core, user());
      case VFIO_DEVICE_GET_IRQ_INFO: return getIrqInfo(this.core, user());
      case VFIO_DEVICE_SET_IRQS: return setIrqs(this.core, user());
      case VFIO_DEVICE_RESET: return deviceReset(this.core);
      case VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: return hotResetInfo(this, user());
      case VFIO_DEVICE_PCI_HOT_RESET: return hotReset(this, user());
      case VFIO_DEVICE_FEATURE: return deviceFeature(this.core, user(), (file) => this.kernel.fds.install(file));
      default: return fail('ENOTTY');
    }
  }

  override read(buf: Uint8Array): number {
    const n = this.pread(buf, this.#pos);
    this.#pos += BigInt(n);
    return n;
  }

  override write(buf: Uint8Array): number {
    const n = this.pwrite(buf, this.#pos);
    this.#pos += BigInt(n);
    return n;
  }

  override pread(buf: Uint8Array, offset: bigint): number {
    this.#checkAccess();
    return regionAccess(this.core, buf, offset, false);
  }

  override pwrite(buf: Uint8Array, offset: bigint): number {
    this.#checkAccess();
    return regionAccess(this.core, buf, offset, true);
  }

  override mmap(length: number, _prot: number, flags: number, offset: bigint): FileMapping {
    this.#checkAccess();
    return regionMmap(this, this.core, length, flags, offset);
  }

  protected override release(): void {
    // vfio_df_device_last_close: the driver closes the device before the iommufd unbind.
    if (this.#opened) this.core.close(this);
    this.#opened = false;
    for (const hook of this.releaseHooks.splice(0).reverse()) hook();
  }

  #checkAccess(): void {
    if (!this.#opened) fail('EINVAL', this.via === 'cdev' ? 'the device cdev is not bound to an iommufd' : 'the device is not open');
  }
}
