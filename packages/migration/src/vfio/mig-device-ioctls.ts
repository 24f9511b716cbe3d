// The device-fd ioctls of migration v2: VFIO_DEVICE_FEATURE MIG_DEVICE_STATE (SET) and
// MIG_DATA_SIZE (GET), and VFIO_DEVICE_RESET, the way out of ERROR. Failures throw HostError.

import { deviceFeature, type HostKernel } from '@vmmkit/core';
import {
  VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_RESET, vfio_device_feature_mig_data_size, vfio_device_feature_mig_state,
} from '@vmmkit/core/uapi';

/**
 * Ask the kernel to move the device to `state` (it walks the arcs itself). Returns the data fd of
 * the session the last arc started, or -1 when it started none; the caller owns that fd.
 */
export function setMigDeviceState(host: HostKernel, deviceFd: number, state: number): number {
  const out = deviceFeature(
    host, deviceFd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
    vfio_device_feature_mig_state.encode({ device_state: state, data_fd: -1 }),
  );
  return vfio_device_feature_mig_state.get(out, 'data_fd');
}

/** The bytes the device would stream in STOP_COPY if it stopped now (an estimate). */
export function queryStopCopySize(host: HostKernel, deviceFd: number): bigint {
  const out = deviceFeature(
    host, deviceFd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, vfio_device_feature_mig_data_size.encode(),
  );
  return vfio_device_feature_mig_data_size.get(out, 'stop_copy_length');
}

/** VFIO_DEVICE_RESET: the device returns to RUNNING and every data transfer session ends. */
export function resetDevice(host: HostKernel, deviceFd: number): void {
  host.ioctl(deviceFd, VFIO_DEVICE_RESET);
}
