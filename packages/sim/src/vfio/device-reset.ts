// VFIO_DEVICE_RESET, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO and VFIO_DEVICE_PCI_HOT_RESET
// (vfio_pci_core.c): function reset, and bus reset of every device on the same domain:bus
// after proving ownership with group fds (legacy) or the calling device's iommufd (cdev).

import {
  VFIO_PCI_DEVID_NOT_OWNED, VFIO_PCI_DEVID_OWNED, VFIO_PCI_HOT_RESET_FLAG_DEV_ID,
  VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED, vfio_pci_dependent_device, vfio_pci_hot_reset, vfio_pci_hot_reset_info,
} from '@vmmkit/core/uapi';
import type { IommufdFile } from '../iommufd/iommufd-file.js';
import type { SimDevice } from '../kernel/sim-device.js';
import type { SimKernel } from '../kernel/sim-kernel.js';
import { fail } from '../kernel/sim-errno.js';
import type { UserArg } from '../kernel/user-arg.js';
import { VfioGroupFile } from './group-file.js';
import { vfioPciCore, type VfioPciCore } from './device-core.js';

/** The calling device fd, as the reset ioctls see it. */
export interface ResetCaller {
  readonly core: VfioPciCore;
  readonly iommufd: { readonly ctx: IommufdFile } | undefined;
}

/** VFIO_DEVICE_RESET: a function reset, when one worked at open, or the driver's own reset (EINVAL otherwise). */
export function deviceReset(core: VfioPciCore): number {
  if (!core.resetWorks && !core.device.model.driverReset) fail('EINVAL', 'the device has no function reset');
  core.functionReset();
  return 0;
}

/** The PCI functions a bus reset of `device` hits: every one on its domain:bus, by BDF. */
export function affectedDevices(kernel: SimKernel, device: SimDevice): SimDevice[] {
  if (device.mdev) fail('ENOTTY', 'a mediated device has no PCI hot reset');
  if (device.config.busReset === false) fail('ENODEV', `no slot or bus reset reaches ${device.name}`);
  const bus = device.name.slice(0, 7);
  return [...kernel.devices.values()].filter((d) => !d.mdev && d.name.startsWith(bus)).sort((a, b) => a.name.localeCompare(b.name));
}

/** VFIO_DEVICE_GET_PCI_HOT_RESET_INFO. */
export function hotResetInfo(caller: ResetCaller, user: UserArg): number {
  const minsz = vfio_pci_hot_reset_info.size;
  const hdr = vfio_pci_hot_reset_info.decode(user.read(0, minsz));
  if (hdr.argsz < minsz) fail('EINVAL', `argsz ${hdr.argsz} < ${minsz}`);
  const { kernel, device } = caller.core;
  const devices = affectedDevices(kernel, device);
  if (devices.length > Math.floor((hdr.argsz - minsz) / vfio_pci_dependent_device.size)) {
    user.write(0, vfio_pci_hot_reset_info.encode({ argsz: hdr.argsz, flags: 0, count: devices.length }));
    fail('ENOSPC', `${devices.length} affected devices do not fit argsz ${hdr.argsz}`);
  }
  const cdev = caller.core.cdevOpened;
  let flags = cdev ? VFIO_PCI_HOT_RESET_FLAG_DEV_ID | VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED : 0;
  const entries = devices.map((d) => {
    const [segment, bus, slot, fn] = d.name.split(/[:.]/).map((x) => parseInt(x, 16)) as [number, number, number, number];
    const id = cdev ? devid(caller.iommufd!.ctx, d) : d.group.id;
    if (cdev && id === VFIO_PCI_DEVID_NOT_OWNED) flags &= ~VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED;
    return vfio_pci_dependent_device.encode({ group_id: id >>> 0, segment, bus, devfn: (slot << 3) | fn });
  });
  entries.forEach((e, i) => user.write(minsz + i * e.byteLength, e));
  user.write(0, vfio_pci_hot_reset_info.encode({ argsz: hdr.argsz, flags, count: devices.length }));
  return 0;
}

/** VFIO_DEVICE_PCI_HOT_RESET. */
export function hotReset(caller: ResetCaller, user: UserArg): number {
  const minsz = vfio_pci_hot_reset.size;
  const hdr = vfio_pci_hot_reset.decode(user.read(0, minsz));
  if (hdr.argsz < minsz || hdr.flags) fail('EINVAL', 'bad argsz or flags');
  // Group fds prove ownership for group-opened devices; a cdev-opened one passes none.
  if ((hdr.count !== 0) === caller.core.cdevOpened) {
    fail('EINVAL', caller.core.cdevOpened ? 'a cdev-opened device takes an empty group fd array' : 'group fds are required');
  }
  const { kernel, device } = caller.core;
  const devices = affectedDevices(kernel, device);
  let owned: (d: SimDevice) => boolean;
  if (hdr.count) {
    if (hdr.count > devices.length) fail('EINVAL', `${hdr.count} group fds for ${devices.length} affected devices`);
    const groups = groupsOf(kernel, user.read(minsz, 4 * hdr.count));
    owned = (d) => groups.has(d.group.id);
  } else {
    const ctx = caller.iommufd!.ctx;
    owned = (d) => devid(ctx, d) !== VFIO_PCI_DEVID_NOT_OWNED;
  }
  // vfio_pci_dev_set_resettable: every function on the bus must be a vfio-pci device.
  if (devices.some((d) => !d.vfioBound)) fail('EINVAL', 'a device on the bus is not bound to vfio-pci');
  const notOwned = devices.find((d) => !owned(d));
  if (notOwned) fail('EINVAL', `the caller does not own ${notOwned.name}`);
  for (const d of devices) vfioPciCore(kernel, d).functionReset();
  return 0;
}

/** The groups behind the fds: EBADF for a closed fd, EINVAL for one that is not a VFIO group. */
function groupsOf(kernel: SimKernel, raw: Uint8Array): Set<number> {
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const groups = new Set<number>();
  for (let i = 0; i < raw.byteLength / 4; i++) {
    const file = kernel.fds.get(dv.getInt32(4 * i, true));
    if (!(file instanceof VfioGroupFile)) fail('EINVAL', `fd ${dv.getInt32(4 * i, true)} is not a VFIO group`);
    groups.add(file.group.id);
  }
  return groups;
}

/**
 * vfio_iommufd_get_dev_id as hot reset reports it: the devid of a device bound to `ctx`,
 * VFIO_PCI_DEVID_OWNED for one whose IOMMU group has a device bound to `ctx`, else NOT_OWNED.
 */
function devid(ctx: IommufdFile, d: SimDevice): number {
  if (!d.vfioBound) return VFIO_PCI_DEVID_NOT_OWNED;
  const id = ctx.devidOf(d);
  if (id !== undefined) return id;
  return d.group.devices.some((x) => ctx.devidOf(x) !== undefined) ? VFIO_PCI_DEVID_OWNED : VFIO_PCI_DEVID_NOT_OWNED;
}
