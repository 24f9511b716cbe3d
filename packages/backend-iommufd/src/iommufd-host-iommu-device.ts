// The host IOMMU of a device attached through iommufd (QEMU's HostIOMMUDeviceIOMMUFD): its
// capabilities come from IOMMU_GET_HW_INFO, so the device must be bound first.

import { HostIommuDevice, type HostIommuDeviceCaps, type VfioDevice } from '@vmmkit/core';
import type { IommufdObject } from './iommufd-object.js';

export class IommufdHostIommuDevice extends HostIommuDevice {
  constructor(
    name: string,
    device: VfioDevice,
    private readonly backend: IommufdObject,
    private readonly devid: number,
  ) {
    super(name, device);
  }

  protected async probe(): Promise<HostIommuDeviceCaps> {
    const info = this.backend.getDeviceInfo(this.devid, this.name);
    return { hwCaps: info.capabilities, hwInfoType: info.type };
  }
}
