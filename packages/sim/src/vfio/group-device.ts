// VFIO_GROUP_GET_DEVICE_FD (vfio_group_ioctl_get_device_fd and vfio_df_group_open in
// drivers/vfio/group.c): open a device of the group through its container or iommufd.

import { compatBindDevice } from '../iommufd/vfio-compat.js';
import type { IommufdFile } from '../iommufd/iommufd-file.js';
import type { SimDevice } from '../kernel/sim-device.js';
import { fail } from '../kernel/sim-errno.js';
import { VfioDeviceFile } from './device-file.js';
import type { VfioGroupFile } from './group-file.js';
import { deviceClosed, deviceOpened, openCount } from './group-state.js';

/**
 * The first open of a device (vfio_df_device_first_open): through an iommufd, bind it and attach
 * it to the compat IOAS; through a container, use the container (EINVAL without VFIO_SET_IOMMU),
 * which holds the group file. Returns the undo for the last close.
 */
function firstOpen(groupFile: VfioGroupFile, device: SimDevice): () => void {
  if (groupFile.iommufd) {
    const ctx: IommufdFile = groupFile.iommufd;
    const devid = compatBindDevice(ctx, device);
    return () => ctx.unbindDevice(devid);
  }
  if (!groupFile.container!.type1) fail('EINVAL', 'the container has no IOMMU set (VFIO_SET_IOMMU)');
  groupFile.containerUsers++;
  groupFile.ref();
  return () => {
    groupFile.containerUsers--;
    groupFile.unref();
  };
}

/**
 * Open the named device: ENODEV if the group has no such vfio device, EINVAL before the group is
 * set to a container. Returns the new fd. The device file's release closes the device again.
 */
export function openGroupDevice(groupFile: VfioGroupFile, name: string): number {
  const device = groupFile.group.devices.find((d) => d.vfioBound && d.name === name);
  if (!device) return fail('ENODEV', `group ${groupFile.group.id} has no vfio device '${name}'`);
  if (!groupFile.hasIommu) fail('EINVAL', `group ${groupFile.group.id} is not set to a container`);
  const lastClose = openCount(device) === 0 ? firstOpen(groupFile, device) : undefined;
  deviceOpened(device);
  const file = new VfioDeviceFile(groupFile.kernel, device, 'group');
  // Runs after the device's own close hooks, as the iommu side is torn down after close_device.
  file.releaseHooks.unshift(() => {
    if (deviceClosed(device) === 0) lastCloseOf(device)?.();
  });
  if (lastClose) lastCloses.set(device, lastClose);
  try {
    file.open();
    return groupFile.kernel.fds.install(file);
  } catch (e) {
    file.discard();
    throw e;
  }
}

/** The undo of each open device's first open, run at its last close. */
const lastCloses = new WeakMap<SimDevice, () => void>();

function lastCloseOf(device: SimDevice): (() => void) | undefined {
  const undo = lastCloses.get(device);
  lastCloses.delete(device);
  return undo;
}
