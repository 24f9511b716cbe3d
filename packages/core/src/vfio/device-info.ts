// VFIO_DEVICE_GET_INFO, read once at attach by every backend.

import type { HostKernel } from '../host/host-kernel.js';
import { VFIO_DEVICE_GET_INFO, vfio_device_info } from '../uapi/vfio.js';
import { vfioCall } from './vfio-call.js';
import type { VfioDeviceInfo } from './vfio-device.js';

/** The device's flags and region and IRQ counts. Throws VfioError naming the device. */
export function getDeviceInfo(host: HostKernel, fd: number, device: string): VfioDeviceInfo {
  const info = vfio_device_info.encode();
  vfioCall('get device info', device, () => host.ioctl(fd, VFIO_DEVICE_GET_INFO, info));
  const v = vfio_device_info.decode(info);
  return { flags: v.flags, numRegions: v.num_regions, numIrqs: v.num_irqs };
}
