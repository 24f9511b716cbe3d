// The host IOMMU of a device attached through the legacy backend (QEMU's
// HostIOMMUDeviceLegacyVFIO): type1 cannot ask the IOMMU anything, so there are no hw caps.

import { HostIommuDevice, type HostIommuDeviceCaps } from '@vmmkit/core';

export class LegacyHostIommuDevice extends HostIommuDevice {
  protected async probe(): Promise<HostIommuDeviceCaps> {
    return { hwCaps: 0n };
  }
}
