// An open VFIO device: from a group (VFIO_GROUP_GET_DEVICE_FD) or a cdev (/dev/vfio/devices/vfio<N>).
// The cdev's iommufd ioctls (bind, attach, detach) are handled by device-iommufd.ts; the rest of
// the device API (info, regions, IRQs, reset, features) is filled in by the device model work.

import type { IommufdFile } from '../iommufd/iommufd-file.js';
import type { SimDevice } from '../kernel/sim-device.js';
import type { SimKernel } from '../kernel/sim-kernel.js';
import { SimFile, type IoctlArg } from '../kernel/sim-file.js';
import { deviceIommufdIoctl, isDeviceIommufdIoctl } from './device-iommufd.js';

export class VfioDeviceFile extends SimFile {
  readonly kind = 'vfio-device' as const;
  /** The iommufd this device fd is bound to (cdev path, VFIO_DEVICE_BIND_IOMMUFD), and its devid. */
  iommufd: { readonly ctx: IommufdFile; readonly devid: number } | undefined;
  /** Cleanups registered by whoever opened, bound or configured the device; run newest first on release. */
  readonly releaseHooks: (() => void)[] = [];

  constructor(
    readonly kernel: SimKernel,
    readonly device: SimDevice,
    readonly via: 'group' | 'cdev',
  ) {
    super();
  }

  override ioctl(request: number, arg: IoctlArg): number {
    if (isDeviceIommufdIoctl(request)) return deviceIommufdIoctl(this, request, arg);
    return super.ioctl(request, arg);
  }

  protected override release(): void {
    for (const hook of this.releaseHooks.splice(0).reverse()) hook();
  }
}
