// An IOMMU group: the unit of ownership of the legacy VFIO API.

import type { SimDevice } from './sim-device.js';

export class SimGroup {
  readonly devices: SimDevice[] = [];

  constructor(readonly id: number) {}

  /** A group is viable when every device in it is bound to vfio (or to no driver). */
  get viable(): boolean {
    return this.devices.every((d) => d.vfioBound);
  }
}
