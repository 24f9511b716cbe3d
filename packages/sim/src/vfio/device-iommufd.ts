// The iommufd ioctls of a VFIO device cdev: VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_ATTACH_IOMMUFD_PT
// and VFIO_DEVICE_DETACH_IOMMUFD_PT (drivers/vfio/device_cdev.c, vfio_main.c, iommufd.c), as 6.12
// and 7.x have them.

import {
  VFIO_DEVICE_ATTACH_PASID, VFIO_DEVICE_BIND_FLAG_TOKEN, vfio_device_attach_iommufd_pt_7_2,
  vfio_device_bind_iommufd_7_2, vfio_device_detach_iommufd_pt_7_2, VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_DETACH_IOMMUFD_PT, vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd,
  vfio_device_detach_iommufd_pt,
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
 * The bind struct as the series reads it: 6.12 copies the 16 bytes it knows (EINVAL for flags);
 * 7.x copies the 24-byte struct with copy_struct_from_user (E2BIG for a non-zero tail) and takes
 * VFIO_DEVICE_BIND_FLAG_TOKEN.
 */
function readBind(file: VfioDeviceFile, user: UserArg): { argsz: number; flags: number; iommufd: number; token: bigint } {
  const minsz = vfio_device_bind_iommufd.size;
  if (!file.kernel.linux.bindToken) {
    const cmd = vfio_device_bind_iommufd.decode(user.read(0, minsz));
    if (cmd.argsz < minsz || cmd.flags || cmd.iommufd < 0) fail('EINVAL', 'bad argsz, flags or fd');
    return { ...cmd, token: 0n };
  }
  const struct = vfio_device_bind_iommufd_7_2;
  const argsz = user.u32(0);
  if (argsz < minsz) fail('EINVAL', `argsz ${argsz} is below ${minsz}`);
  if (argsz > struct.size && user.read(struct.size, argsz - struct.size).some((b) => b !== 0)) fail('E2BIG', 'non-zero bytes past the struct');
  const bytes = new Uint8Array(struct.size);
  bytes.set(user.read(0, Math.min(argsz, struct.size)));
  const cmd = struct.decode(bytes);
  if (cmd.iommufd < 0 || cmd.flags & ~VFIO_DEVICE_BIND_FLAG_TOKEN) fail('EINVAL', 'bad flags or fd');
  return { argsz, flags: cmd.flags, iommufd: cmd.iommufd, token: cmd.token_uuid_ptr };
}

/**
 * vfio_df_check_token (7.x): no SimHost device is an SR-IOV VF or a PF with VFs, so a token is
 * never wanted: an mdev has no token op (EINVAL), vfio-pci reads the UUID (EFAULT) and refuses it.
 */
function checkToken(file: VfioDeviceFile, token: bigint): void {
  if (file.device.mdev) fail('EINVAL', `${file.device.name} takes no VF token`);
  file.kernel.memory.read(token, 16);
  fail('EINVAL', `${file.device.name} is neither a VF nor a PF with VFs: no VF token is wanted`);
}

/**
 * VFIO_DEVICE_BIND_IOMMUFD: EINVAL for a bad struct, a group-opened fd, a second bind or a device
 * open elsewhere; EBUSY while the group is open; EBADF / EBADFD for an fd that is not an iommufd;
 * EPERM if the IOMMU group's DMA is owned elsewhere. A bound cdev blocks opening its group.
 */
function bind(file: VfioDeviceFile, user: UserArg): number {
  const cmd = readBind(file, user);
  if (file.via === 'group') fail('EINVAL', 'BIND_IOMMUFD is for cdev fds only');
  const group = groupState(file.device.group);
  if (group.opened) fail('EBUSY', `group ${file.device.group.id} is open`);
  if (file.iommufd) fail('EINVAL', 'the device fd is already bound');
  if (cmd.flags & VFIO_DEVICE_BIND_FLAG_TOKEN) checkToken(file, cmd.token);
  const ctx = file.kernel.fds.get(cmd.iommufd);
  if (!(ctx instanceof IommufdFile)) fail('EBADFD', `fd ${cmd.iommufd} is not an iommufd`);
  if (openCount(file.device)) fail('EINVAL', `${file.device.name} is already open`);
  const devid = ctx.bindDevice(file.device);
  try {
    user.write(vfio_device_bind_iommufd.members.out_devid.offset, u32le(devid));
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

/**
 * The flags of ATTACH/DETACH_IOMMUFD_PT: none on 6.12 (EINVAL); 7.x knows the PASID flag, which
 * needs the driver's pasid ops (EOPNOTSUPP: SimHost's devices have no PASID) and the pasid field.
 */
function checkPtFlags(file: VfioDeviceFile, argsz: number, flags: number, pasidEnd: number): void {
  const pasidFlag = file.kernel.linux.cdevPasid ? VFIO_DEVICE_ATTACH_PASID : 0;
  if (flags & ~pasidFlag) fail('EINVAL', `unknown flags 0x${flags.toString(16)}`);
  if (flags & pasidFlag) {
    if (file.device.mdev) fail('EOPNOTSUPP', `${file.device.name} cannot attach a PASID`);
    if (argsz < pasidEnd) fail('EINVAL', `argsz ${argsz} has no room for the pasid`);
    fail('EOPNOTSUPP', 'PASID attachment is not modelled');
  }
}

/** VFIO_DEVICE_ATTACH_IOMMUFD_PT: attach, or replace an attachment; the pt_id in use comes back. */
function attach(file: VfioDeviceFile, user: UserArg): number {
  const cmd = vfio_device_attach_iommufd_pt.decode(user.read(0, vfio_device_attach_iommufd_pt.size));
  if (cmd.argsz < vfio_device_attach_iommufd_pt.size) fail('EINVAL', `argsz ${cmd.argsz} is too small`);
  checkPtFlags(file, cmd.argsz, cmd.flags, vfio_device_attach_iommufd_pt_7_2.size);
  const { ctx, devid } = file.iommufd!;
  const ptId = ctx.attachDevice(devid, cmd.pt_id);
  try {
    user.write(vfio_device_attach_iommufd_pt.members.pt_id.offset, u32le(ptId));
  } catch (e) {
    ctx.detachDevice(devid);
    throw e;
  }
  return 0;
}

/** VFIO_DEVICE_DETACH_IOMMUFD_PT: success even when not attached. */
function detach(file: VfioDeviceFile, user: UserArg): number {
  const cmd = vfio_device_detach_iommufd_pt.decode(user.read(0, vfio_device_detach_iommufd_pt.size));
  if (cmd.argsz < vfio_device_detach_iommufd_pt.size) fail('EINVAL', `argsz ${cmd.argsz} is too small`);
  checkPtFlags(file, cmd.argsz, cmd.flags, vfio_device_detach_iommufd_pt_7_2.size);
  const { ctx, devid } = file.iommufd!;
  ctx.detachDevice(devid);
  return 0;
}

const u32le = (v: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
};

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
