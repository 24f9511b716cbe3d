// VFIO_DEVICE_FEATURE: the feature ioctl every device model and migration use, with its
// GET/SET/PROBE flags and a payload after the header.

import type { HostKernel } from '../host/host-kernel.js';
import { HostError } from '../host/host-error.js';
import {
  VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET, vfio_device_feature,
} from '../uapi/vfio.js';

/**
 * Issue VFIO_DEVICE_FEATURE with `flags` (feature number | GET/SET/PROBE) and `payload`; returns
 * the payload as the kernel left it. Throws HostError.
 */
export function deviceFeature(host: HostKernel, fd: number, flags: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const arg = vfio_device_feature.encode({ flags, data: payload });
  host.ioctl(fd, VFIO_DEVICE_FEATURE, arg);
  return arg.subarray(vfio_device_feature.size);
}

/**
 * Whether the device supports `feature` for GET and/or SET (a PROBE). ENOTTY (unknown feature)
 * and EINVAL (known, but not for that access) answer no; other errors are thrown.
 */
export function probeDeviceFeature(host: HostKernel, fd: number, feature: number, access: { get?: boolean; set?: boolean }): boolean {
  const flags = feature | VFIO_DEVICE_FEATURE_PROBE | (access.get ? VFIO_DEVICE_FEATURE_GET : 0) | (access.set ? VFIO_DEVICE_FEATURE_SET : 0);
  try {
    deviceFeature(host, fd, flags);
    return true;
  } catch (e) {
    if (HostError.is(e, 'ENOTTY') || HostError.is(e, 'EINVAL')) return false;
    throw e;
  }
}
