// Which container a device belongs to. Only VfioContainerBase writes it (its addDevice and
// removeDevice); VfioDevice.container reads it. Not exported from the package.

import type { VfioContainerBase } from './vfio-container-base.js';
import type { VfioDevice } from './vfio-device.js';

const membership = new WeakMap<VfioDevice, VfioContainerBase>();

/** The container `device` is a member of. */
export function containerOf(device: VfioDevice): VfioContainerBase | undefined {
  return membership.get(device);
}

/** Record (or, with undefined, forget) the container `device` is a member of. */
export function setContainerOf(device: VfioDevice, container: VfioContainerBase | undefined): void {
  if (container) membership.set(device, container);
  else membership.delete(device);
}
