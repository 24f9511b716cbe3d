// The iommufd ioctls of a VFIO device cdev: VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_ATTACH_IOMMUFD_PT
// and VFIO_DEVICE_DETACH_IOMMUFD_PT (drivers/vfio/device_cdev.c).
// Placeholder: lands with the iommufd model.

import { VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_DETACH_IOMMUFD_PT } from '@vmmkit/core';
import { fail } from '../kernel/sim-errno.js';
import type { IoctlArg } from '../kernel/sim-file.js';
import type { VfioDeviceFile } from './device-file.js';

const REQUESTS = new Set([VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_DETACH_IOMMUFD_PT]);

export function isDeviceIommufdIoctl(request: number): boolean {
  return REQUESTS.has(request);
}

export function deviceIommufdIoctl(_file: VfioDeviceFile, _request: number, _arg: IoctlArg): number {
  return fail('ENOTTY', 'iommufd model not built yet');
}
