// The iommufd ioctls of a VFIO device cdev: VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_ATTACH_IOMMUFD_PT
// and VFIO_DEVICE_DETACH_IOMMUFD_PT (drivers/vfio/device_cdev.c, vfio_main.c, iommufd.c).

import {
  VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_DETACH_IOMMUFD_PT,
  vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd, vfio_device_detach_iommufd_pt,
} from '@vmmkit/core/uapi';
import { IommufdFile } from '../iommufd/iommufd-file.js';
import { fail } from '../kernel/sim-errno.js';
import type { IoctlArg } from '../kernel/sim-file.js';
import { UserArg } from '../kernel/user-arg.js';
import type { VfioDeviceFile } from './device-file.js';
import { deviceClosed, deviceOpened, groupState, openCount } from './group-state.js';

const REQUESTS = new Set([VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_DETACH_IOMMUFD_PT]);

export function isDeviceIommufdIoctl(request: number): boolean {
  return REQUESTS.has(request);
}

/**
 * VFIO_DEVICE_BIND_IOMMUFD: EINVAL for a bad struct, a group-opened fd, a second bind or a device
 * open elsewhere; EBUSY while the group is open; EBADF / EBADFD for an fd that is not an iommufd;
 * EPERM if the IOMMU group's DMA is owned elsewhere. A bound cdev blocks opening its group.
 */
function bind(file: VfioDeviceFile, user: UserArg): number {
  const bytes = user.read(0, vfio_device_bind_iommufd.size);
  const cmd = vfio_device_bind_iommufd.decode(bytes);
  if (cmd.argsz < vfio_device_bind_iommufd.size || cmd.flags || cmd.iommufd < 0) fail('EINVAL', 'bad argsz, flags or fd');
  if (file.via === 'group') fail('EINVAL', 'BIND_IOMMUFD is for cdev fds only');
  const group = groupState(file.device.group);
  if (group.opened) fail('EBUSY', `group ${file.device.group.id} is open`);
  if (file.iommufd) fail('EINVAL', 'the device fd is already bound');
  const ctx = file.kernel.fds.get(cmd.iommufd);
  if (!(ctx instanceof IommufdFile)) fail('EBADFD', `fd ${cmd.iommufd} is not an iommufd`);
  if (openCount(file.device)) fail('EINVAL', `${file.device.name} is already open`);
  const devid = ctx.bindDevice(file.device);
  try {
    vfio_device_bind_iommufd.set(bytes, 'out_devid', devid);
    user.write(vfio_device_bind_iommufd.members.out_devid.offset, bytes.subarray(vfio_device_bind_iommufd.members.out_devid.offset));
  } catch (e) {
    ctx.unbindDevice(devid);
    throw e;
  }
  group.cdevBound++;
  deviceOpened(file.device);
  file.iommufd = { ctx, devid };
  // Runs after the device's own close hooks, as vfio_df_unbind_iommufd follows close_device.
  file.releaseHooks.unshift(() => {
    ctx.unbindDevice(devid);
    deviceClosed(file.device);
    group.cdevBound--;
  });
  return 0;
}

/** VFIO_DEVICE_ATTACH_IOMMUFD_PT: attach, or replace an attachment; the pt_id in use comes back. */
function attach(file: VfioDeviceFile, user: UserArg): number {
  const bytes = user.read(0, vfio_device_attach_iommufd_pt.size);
  const cmd = vfio_device_attach_iommufd_pt.decode(bytes);
  if (cmd.argsz < vfio_device_attach_iommufd_pt.size || cmd.flags) fail('EINVAL', 'bad argsz or flags');
  const { ctx, devid } = file.iommufd!;
  const ptId = ctx.attachDevice(devid, cmd.pt_id);
  try {
    vfio_device_attach_iommufd_pt.set(bytes, 'pt_id', ptId);
    user.write(vfio_device_attach_iommufd_pt.members.pt_id.offset, bytes.subarray(vfio_device_attach_iommufd_pt.members.pt_id.offset));
  } catch (e) {
    ctx.detachDevice(devid);
    throw e;
  }
  return 0;
}

/** VFIO_DEVICE_DETACH_IOMMUFD_PT: success even when not attached. */
function detach(file: VfioDeviceFile, user: UserArg): number {
  const cmd = vfio_device_detach_iommufd_pt.decode(user.read(0, vfio_device_detach_iommufd_pt.size));
  if (cmd.argsz < vfio_device_detach_iommufd_pt.size || cmd.flags) fail('EINVAL', 'bad argsz or flags');
  const { ctx, devid } = file.iommufd!;
  ctx.detachDevice(devid);
  return 0;
}

/**
 * Dispatch (vfio_device_fops_unl_ioctl): BIND first; the others need a bound cdev (EINVAL before
 * the bind) and are no ioctls of a group-opened fd (the driver's ENOTTY).
 */
export function deviceIommufdIoctl(file: VfioDeviceFile, request: number, arg: IoctlArg): number {
  const user = (): UserArg => UserArg.of(arg, file.kernel.memory);
  if (request === VFIO_DEVICE_BIND_IOMMUFD) return bind(file, user());
  if (file.via === 'group') return fail('ENOTTY', 'not an ioctl of a group-opened device fd');
  if (!file.iommufd) return fail('EINVAL', 'the cdev is not bound to an iommufd');
  return request === VFIO_DEVICE_ATTACH_IOMMUFD_PT ? attach(file, user()) : detach(file, user());
}
