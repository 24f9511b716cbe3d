// The iommufd contract with the edu's own DMA engine doing the DMA, as on a real host: on SimHost
// (a cross-check of the same program), and on LinuxHost where real edu devices are bound to vfio.

import { LinuxHost, type HostKernel } from '@vmmkit/core';
import { describeVfioIommuContract, hostContractHarness, realEduDevices, type VfioIommuContractCapabilities } from '@vmmkit/core/testing';
import { SimHost } from '@vmmkit/sim';
import { TWO_EDU_MACHINE } from '@vmmkit/sim/testing';
import { IommufdObject, IommufdIommuBackend } from '../src/index.js';

const caps = (devices: number, iommuDirtyTracking: boolean): VfioIommuContractCapabilities => ({
  partialUnmap: 'ignored',
  iommuDirtyTracking,
  dirtyReports: 'exact',
  noClear: true,
  hwCaps: true,
  sharedContainer: true,
  multipleDevices: devices >= 2,
  faultInjection: false,
});

const harness = (host: HostKernel, devices: readonly string[]) => {
  let backend: IommufdObject | undefined;
  return hostContractHarness({
    host,
    devices,
    backend: (h, events) => {
      backend = new IommufdObject('iommufd0', h);
      return new IommufdIommuBackend(h, events);
    },
    prepareDevice: (device) => void (device.iommufd = backend),
  });
};

describeVfioIommuContract('iommufd, edu DMA engine (SimHost)', caps(2, true), () =>
  harness(new SimHost(TWO_EDU_MACHINE), ['/sys/bus/pci/devices/0000:00:03.0', '/sys/bus/pci/devices/0000:00:04.0']),
);

// QEMU's emulated VT-d has no dirty tracking (realhost.md; IOMMU_HWPT_ALLOC(DIRTY_TRACKING) is
// EOPNOTSUPP in the kernel tier's guest), so the real host declares none. The title says which
// cases cannot run there and why.
const real = realEduDevices('/dev/iommu');
describeVfioIommuContract(
  'iommufd, edu DMA engine (LinuxHost; cannot run here: IOMMU dirty tracking, which QEMU 7.2\'s VT-d lacks, and fault injection, which is SimHost\'s)',
  caps(real.devices.length, false),
  () => harness(new LinuxHost(), real.devices),
  real.unavailable,
);
