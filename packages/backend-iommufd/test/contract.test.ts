// The VfioIommuBackend contract for the iommufd backend on SimHost.

import {
  IOMMU_DESTROY, IOMMU_GET_HW_INFO, IOMMU_HWPT_ALLOC, IOMMU_HWPT_GET_DIRTY_BITMAP, IOMMU_HWPT_SET_DIRTY_TRACKING,
  IOMMU_IOAS_ALLOC, IOMMU_IOAS_MAP, IOMMU_IOAS_UNMAP, VFIO_DEVICE_DETACH_IOMMUFD_PT, VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_GET_INFO,
} from '@vmmkit/core/uapi';
import { describeVfioIommuContract } from '@vmmkit/core/testing';
import { simContractHarness } from '@vmmkit/sim/testing';
import { IommufdObject, IommufdIommuBackend } from '../src/index.js';

describeVfioIommuContract(
  'iommufd (SimHost)',
  {
    // iommufd says ENOENT for a partial unmap; the backend reads it as "nothing to unmap", as QEMU does.
    partialUnmap: 'ignored',
    iommuDirtyTracking: true,
    dirtyReports: 'exact',
    noClear: true,
    hwCaps: true,
    sharedContainer: true,
    multipleDevices: true,
    faultInjection: true,
  },
  () => {
    let backend: IommufdObject | undefined;
    return simContractHarness({
      backend: (host, events) => {
        backend = new IommufdObject('iommufd0', host);
        return new IommufdIommuBackend(host, events);
      },
      prepareDevice: (device) => void (device.iommufd = backend),
      attachIoctls: [
        { name: 'VFIO_DEVICE_BIND_IOMMUFD', ioctl: VFIO_DEVICE_BIND_IOMMUFD, on: 'vfio-device' },
        { name: 'IOMMU_GET_HW_INFO', ioctl: IOMMU_GET_HW_INFO, on: 'iommufd' },
        { name: 'IOMMU_IOAS_ALLOC', ioctl: IOMMU_IOAS_ALLOC, on: 'iommufd' },
        { name: 'IOMMU_HWPT_ALLOC', ioctl: IOMMU_HWPT_ALLOC, on: 'iommufd' },
        { name: 'VFIO_DEVICE_ATTACH_IOMMUFD_PT', ioctl: VFIO_DEVICE_ATTACH_IOMMUFD_PT, on: 'vfio-device' },
        { name: 'IOMMU_IOAS_MAP', ioctl: IOMMU_IOAS_MAP, on: 'iommufd' },
        { name: 'VFIO_DEVICE_GET_INFO', ioctl: VFIO_DEVICE_GET_INFO, on: 'vfio-device' },
      ],
      detachIoctls: [
        { name: 'VFIO_DEVICE_DETACH_IOMMUFD_PT', ioctl: VFIO_DEVICE_DETACH_IOMMUFD_PT, on: 'vfio-device' },
        { name: 'IOMMU_IOAS_UNMAP', ioctl: IOMMU_IOAS_UNMAP, on: 'iommufd' },
        { name: 'IOMMU_DESTROY', ioctl: IOMMU_DESTROY, on: 'iommufd' },
      ],
      mapIoctl: { name: 'IOMMU_IOAS_MAP', ioctl: IOMMU_IOAS_MAP, on: 'iommufd' },
      unmapIoctl: { name: 'IOMMU_IOAS_UNMAP', ioctl: IOMMU_IOAS_UNMAP, on: 'iommufd' },
      queryDirtyIoctl: { name: 'IOMMU_HWPT_GET_DIRTY_BITMAP', ioctl: IOMMU_HWPT_GET_DIRTY_BITMAP, on: 'iommufd' },
      dirtyTrackingIoctl: { name: 'IOMMU_HWPT_SET_DIRTY_TRACKING', ioctl: IOMMU_HWPT_SET_DIRTY_TRACKING, on: 'iommufd' },
    });
  },
);
