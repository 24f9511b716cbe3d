// The example third-party backend keeps the same contract as vmmkit's own backends: the shared
// suite of @vmmkit/core/testing runs against it on SimHost, and a VMM uses it per device.

import { expect, it } from 'vitest';
import { Vmm } from '@vmmkit/core';
import {
  IOMMU_DESTROY, IOMMU_IOAS_ALLOC, IOMMU_IOAS_MAP, IOMMU_IOAS_UNMAP, VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_GET_INFO,
} from '@vmmkit/core/uapi';
import { describeVfioIommuContract } from '@vmmkit/core/testing';
import { vfioPciPlugin } from '@vmmkit/device-vfio-pci';
import { SimHost } from '@vmmkit/sim';
import { NIC_A, NIC_B, simContractHarness, simMachine } from '@vmmkit/sim/testing';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { IoasIommuBackend, ioasBackendPlugin } from '../src/third-party-backend/index.js';

describeVfioIommuContract(
  'the example IOAS backend (SimHost)',
  {
    partialUnmap: 'ignored',
    iommuDirtyTracking: false,
    dirtyReports: 'exact',
    noClear: false,
    hwCaps: false,
    sharedContainer: true,
    multipleDevices: true,
    faultInjection: true,
  },
  () => simContractHarness({
    backend: (host, events) => new IoasIommuBackend(host, events),
    attachIoctls: [
      { name: 'VFIO_DEVICE_BIND_IOMMUFD', ioctl: VFIO_DEVICE_BIND_IOMMUFD, on: 'vfio-device' },
      { name: 'IOMMU_IOAS_ALLOC', ioctl: IOMMU_IOAS_ALLOC, on: 'iommufd' },
      { name: 'IOMMU_IOAS_MAP', ioctl: IOMMU_IOAS_MAP, on: 'iommufd' },
      { name: 'VFIO_DEVICE_ATTACH_IOMMUFD_PT', ioctl: VFIO_DEVICE_ATTACH_IOMMUFD_PT, on: 'vfio-device' },
      { name: 'VFIO_DEVICE_GET_INFO', ioctl: VFIO_DEVICE_GET_INFO, on: 'vfio-device' },
    ],
    detachIoctls: [
      { name: 'IOMMU_IOAS_UNMAP', ioctl: IOMMU_IOAS_UNMAP, on: 'iommufd' },
      { name: 'IOMMU_DESTROY', ioctl: IOMMU_DESTROY, on: 'iommufd' },
    ],
    mapIoctl: { name: 'IOMMU_IOAS_MAP', ioctl: IOMMU_IOAS_MAP, on: 'iommufd' },
    unmapIoctl: { name: 'IOMMU_IOAS_UNMAP', ioctl: IOMMU_IOAS_UNMAP, on: 'iommufd' },
  }),
);

it('serves the devices that ask for it, beside vmmkit\'s own backends', async () => {
  const host = new SimHost(simMachine());
  const vmm = await Vmm.create({ host, plugins: [iommufdPlugin(), vfioPciPlugin(), ioasBackendPlugin()], memory: [{ gpa: 0n, size: 16n << 20n }] });
  vmm.addObject('iommufd,id=iommufd0');
  await vmm.addDevice(`vfio-pci,id=a,host=${NIC_A},vfio-iommu=vfio-iommu-ioas`);
  await vmm.addDevice(`vfio-pci,id=b,host=${NIC_B},iommufd=iommufd0`);
  const backends = vmm.devices.map((d) => (d as unknown as { vfio: { container: { backend: { kind: string } } } }).vfio.container.backend.kind);
  expect(backends).toEqual(['vfio-iommu-ioas', 'vfio-iommu-iommufd']);
  await vmm.close();
  expect(host.census().fds).toBe(0);
});
