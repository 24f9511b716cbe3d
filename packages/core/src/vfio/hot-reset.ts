// VFIO_DEVICE_GET_PCI_HOT_RESET_INFO and VFIO_DEVICE_PCI_HOT_RESET: which devices a bus or slot
// reset would affect, and the reset itself (QEMU's vfio_pci_get_pci_hot_reset_info).

import { VfioError } from '../errors/vmm-error.js';
import { HostError } from '../host/host-error.js';
import type { HostKernel } from '../host/host-kernel.js';
import {
  VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, VFIO_DEVICE_PCI_HOT_RESET, vfio_pci_dependent_device, vfio_pci_hot_reset,
  vfio_pci_hot_reset_info,
} from '../uapi/vfio.js';
import type { VfioDevice } from './vfio-device.js';
import { vfioCall } from './vfio-call.js';

/** A device a hot reset would also reset. */
export interface HotResetDependent {
  /** Its PCI name, `dddd:bb:ss.f`. */
  readonly name: string;
  /** Its IOMMU group (group path), or its iommufd devid / VFIO_PCI_DEVID_(NOT_)OWNED (with DEV_ID). */
  readonly id: number;
}

export interface HotResetInfo {
  /** VFIO_PCI_HOT_RESET_FLAG_DEV_ID (ids are devids) and DEV_ID_OWNED (every device is ours). */
  readonly flags: number;
  readonly devices: readonly HotResetDependent[];
}

const pciName = (segment: number, bus: number, devfn: number): string =>
  `${segment.toString(16).padStart(4, '0')}:${bus.toString(16).padStart(2, '0')}:${(devfn >> 3).toString(16).padStart(2, '0')}.${devfn & 7}`;

/** The devices a hot reset of `device` affects, growing the array as the kernel asks (ENOSPC). */
export function getHotResetInfo(host: HostKernel, device: VfioDevice): HotResetInfo {
  let count = 0;
  for (let tries = 0; tries < 8; tries++) {
    const arg = new Uint8Array(vfio_pci_hot_reset_info.size + count * vfio_pci_dependent_device.size);
    vfio_pci_hot_reset_info.set(arg, 'argsz', arg.byteLength);
    try {
      host.ioctl(device.fd, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, arg);
    } catch (e) {
      if (HostError.is(e, 'ENOSPC') && vfio_pci_hot_reset_info.get(arg, 'count') > count) {
        count = vfio_pci_hot_reset_info.get(arg, 'count');
        continue;
      }
      throw vfioCall('get the PCI hot reset info', device.name, () => {
        throw e;
      });
    }
    const info = vfio_pci_hot_reset_info.decode(arg);
    const devices = vfio_pci_hot_reset_info.readFlex(arg, info.count).map((d) => ({
      name: pciName(d.segment, d.bus, d.devfn),
      // group_id and devid share the union; devids are signed (NOT_OWNED is -1).
      id: d.devid | 0,
    }));
    return { flags: info.flags, devices };
  }
  throw vfioCall('get the PCI hot reset info', device.name, () => {
    throw new VfioError('get the PCI hot reset info', device.name, { errno: 'EAGAIN', detail: 'the affected device count kept changing' });
  });
}

/** VFIO_DEVICE_PCI_HOT_RESET proving ownership with `groupFds` (legacy) or none (iommufd). */
export function pciHotResetIoctl(host: HostKernel, device: VfioDevice, groupFds: readonly number[]): void {
  const arg = vfio_pci_hot_reset.encode({ count: groupFds.length, group_fds: groupFds });
  vfioCall('reset the PCI bus (hot reset)', device.name, () => host.ioctl(device.fd, VFIO_DEVICE_PCI_HOT_RESET, arg));
}
