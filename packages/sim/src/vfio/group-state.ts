// VFIO core state kept per IOMMU group and per device (struct vfio_group's opened_file and
// cdev_device_open_cnt, struct vfio_device's open_count: drivers/vfio/{group.c,vfio_main.c}).
// The group file and the cdev bind path both consult it for their mutual exclusion.

import { InvariantError } from '@vmmkit/core';
import type { SimDevice } from '../kernel/sim-device.js';
import type { SimGroup } from '../kernel/sim-group.js';

/** What the VFIO core knows of a group. */
export interface GroupState {
  /** The open group file (a group is opened once: EBUSY). */
  opened: object | undefined;
  /** Devices of the group bound through their cdev (they block opening the group: EBUSY). */
  cdevBound: number;
}

const groups = new WeakMap<SimGroup, GroupState>();
const openCounts = new WeakMap<SimDevice, number>();

export function groupState(group: SimGroup): GroupState {
  let state = groups.get(group);
  if (!state) groups.set(group, (state = { opened: undefined, cdevBound: 0 }));
  return state;
}

/** How many device files have the device open (group device fds may share it; a cdev may not). */
export function openCount(device: SimDevice): number {
  return openCounts.get(device) ?? 0;
}

/** Count an open; returns the new count (1 is the first open). */
export function deviceOpened(device: SimDevice): number {
  const n = openCount(device) + 1;
  openCounts.set(device, n);
  return n;
}

/** Count a close; returns the new count (0 is the last close). */
export function deviceClosed(device: SimDevice): number {
  const n = openCount(device) - 1;
  if (n < 0) throw new InvariantError(`sim: ${device.name} closed more often than opened`);
  openCounts.set(device, n);
  return n;
}
