// The legacy contract with the edu's own DMA engine doing the DMA, as on a real host: on SimHost
// (a cross-check of the same program), and on LinuxHost where real edu devices are bound to vfio.

import { LinuxHost, type VfioIommuBackend } from '@vmmkit/core';
import { describeVfioIommuContract, hostContractHarness, realEduDevices, type VfioIommuContractCapabilities } from '@vmmkit/core/testing';
import { SimHost } from '@vmmkit/sim';
import { TWO_EDU_MACHINE } from '@vmmkit/sim/testing';
import { LegacyIommuBackend } from '../src/index.js';

const type1Caps = (devices: number): VfioIommuContractCapabilities => ({
  partialUnmap: 'EINVAL',
  iommuDirtyTracking: true,
  dirtyReports: 'all-mapped',
  noClear: false,
  hwCaps: false,
  sharedContainer: true,
  multipleDevices: devices >= 2,
  faultInjection: false,
});

const compatCaps = (devices: number): VfioIommuContractCapabilities => ({
  ...type1Caps(devices),
  partialUnmap: 'ignored',
  iommuDirtyTracking: false,
  dirtyReports: 'exact',
});

const legacy = (containerPath: string) => (host: ConstructorParameters<typeof LegacyIommuBackend>[0], events: ConstructorParameters<typeof LegacyIommuBackend>[1]): VfioIommuBackend =>
  new LegacyIommuBackend(host, events, { containerPath });

const simDevices = ['/sys/bus/pci/devices/0000:00:03.0', '/sys/bus/pci/devices/0000:00:04.0'];
describeVfioIommuContract('legacy type1, edu DMA engine (SimHost)', type1Caps(2), () =>
  hostContractHarness({ host: new SimHost(TWO_EDU_MACHINE), devices: simDevices, backend: legacy('/dev/vfio/vfio') }),
);

const vfio = realEduDevices('/dev/vfio/vfio');
describeVfioIommuContract(
  "legacy type1 on /dev/vfio/vfio, edu DMA engine (LinuxHost; cannot run here: fault injection, which is SimHost's)",
  type1Caps(vfio.devices.length),
  () => hostContractHarness({ host: new LinuxHost(), devices: vfio.devices, backend: legacy('/dev/vfio/vfio') }),
  vfio.unavailable,
);

const iommu = realEduDevices('/dev/iommu');
describeVfioIommuContract(
  "legacy type1 on iommufd's compat container /dev/iommu, edu DMA engine (LinuxHost; cannot run here: IOMMU dirty tracking, which the compat container does not serve, and fault injection, which is SimHost's)",
  compatCaps(iommu.devices.length),
  () => hostContractHarness({ host: new LinuxHost(), devices: iommu.devices, backend: legacy('/dev/iommu') }),
  iommu.unavailable,
);
