// The VfioIommuBackend contract for the legacy backend on SimHost, on both containers it runs on.

import { describe } from 'vitest';
import {
  VFIO_DEVICE_GET_INFO, VFIO_GET_API_VERSION, VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER, VFIO_IOMMU_DIRTY_PAGES, VFIO_IOMMU_UNMAP_DMA,
  VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA, VFIO_SET_IOMMU,
} from '@vmmkit/core/uapi';
import { describeVfioIommuContract, type ContractIoctl } from '@vmmkit/core/testing';
import { simContractHarness } from '@vmmkit/sim/testing';
import { LegacyIommuBackend } from '../src/index.js';

const attachIoctls = (container: 'vfio-container' | 'iommufd'): ContractIoctl[] => [
  { name: 'VFIO_GROUP_GET_STATUS', ioctl: VFIO_GROUP_GET_STATUS, on: 'vfio-group' },
  { name: 'VFIO_GET_API_VERSION', ioctl: VFIO_GET_API_VERSION, on: container },
  { name: 'VFIO_GROUP_SET_CONTAINER', ioctl: VFIO_GROUP_SET_CONTAINER, on: 'vfio-group' },
  { name: 'VFIO_SET_IOMMU', ioctl: VFIO_SET_IOMMU, on: container },
  { name: 'VFIO_IOMMU_GET_INFO', ioctl: VFIO_IOMMU_GET_INFO, on: container },
  { name: 'VFIO_IOMMU_MAP_DMA', ioctl: VFIO_IOMMU_MAP_DMA, on: container },
  { name: 'VFIO_GROUP_GET_DEVICE_FD', ioctl: VFIO_GROUP_GET_DEVICE_FD, on: 'vfio-group' },
  { name: 'VFIO_DEVICE_GET_INFO', ioctl: VFIO_DEVICE_GET_INFO, on: 'vfio-device' },
];

/** The ioctls of the operations after attach, on a container fd of `kind`. */
const operationIoctls = (kind: 'vfio-container' | 'iommufd') => ({
  detachIoctls: [
    { name: 'VFIO_IOMMU_UNMAP_DMA', ioctl: VFIO_IOMMU_UNMAP_DMA, on: kind },
    { name: 'VFIO_GROUP_UNSET_CONTAINER', ioctl: VFIO_GROUP_UNSET_CONTAINER, on: 'vfio-group' as const },
  ],
  mapIoctl: { name: 'VFIO_IOMMU_MAP_DMA', ioctl: VFIO_IOMMU_MAP_DMA, on: kind },
  unmapIoctl: { name: 'VFIO_IOMMU_UNMAP_DMA', ioctl: VFIO_IOMMU_UNMAP_DMA, on: kind },
  queryDirtyIoctl: { name: 'VFIO_IOMMU_DIRTY_PAGES', ioctl: VFIO_IOMMU_DIRTY_PAGES, on: kind },
  dirtyTrackingIoctl: { name: 'VFIO_IOMMU_DIRTY_PAGES', ioctl: VFIO_IOMMU_DIRTY_PAGES, on: kind },
});

describe('legacy type1 backend', () => {
  describeVfioIommuContract(
    'legacy type1 on /dev/vfio/vfio (SimHost)',
    {
      partialUnmap: 'EINVAL',
      iommuDirtyTracking: true,
      // type1 cannot see a vfio-pci device's writes: it reports every mapped page.
      dirtyReports: 'all-mapped',
      noClear: false,
      hwCaps: false,
      sharedContainer: true,
      multipleDevices: true,
      faultInjection: true,
    },
    () =>
      simContractHarness({
        backend: (host, events) => new LegacyIommuBackend(host, events),
        attachIoctls: attachIoctls('vfio-container'),
        ...operationIoctls('vfio-container'),
      }),
  );

  describeVfioIommuContract(
    "legacy type1 on iommufd's compat container /dev/iommu (SimHost)",
    {
      // iommufd says ENOENT for a partial unmap, which reads as "nothing to unmap".
      partialUnmap: 'ignored',
      // The compat container reports no migration capability: no dirty tracking.
      iommuDirtyTracking: false,
      dirtyReports: 'exact',
      noClear: false,
      hwCaps: false,
      sharedContainer: true,
      multipleDevices: true,
      faultInjection: true,
    },
    () =>
      simContractHarness({
        backend: (host, events) => new LegacyIommuBackend(host, events, { containerPath: '/dev/iommu' }),
        attachIoctls: attachIoctls('iommufd'),
        ...operationIoctls('iommufd'),
      }),
  );
});
