// The Linux series SimHost models (SimHostConfig.kernel), and every behaviour that differs between
// them, each chosen here once: the code that behaves differently reads its one field. The facts
// are the headers and sources of each series (core/test/fixtures/linux-uapi-*.json; the kernel tier
// builds 7.2, and its differential fuzzer compares SimHost in 7.2 mode with it).

import { ConfigError } from '@vmmkit/core';
import {
  IOMMU_HW_INFO_FLAG_INPUT_TYPE, IOMMU_HWPT_ALLOC_PASID, MOCK_FLAGS_DEVICE_PASID, IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_FAULT_ID_VALID, MOCK_FLAGS_DEVICE_HUGE_IOVA, MOCK_FLAGS_DEVICE_NO_DIRTY,
} from '@vmmkit/core/uapi';

/** A Linux series SimHost can model. */
export type SimKernelVersion = '6.12' | '7.2';

/**
 * The default: 6.12, the long-term kernel of Debian 13, RHEL 10 and the other distributions whose
 * hosts run VFIO today (and the series DESIGN.md's uAPI facts come from). 7.2 is what the kernel
 * tier builds and checks SimHost against.
 */
export const DEFAULT_KERNEL: SimKernelVersion = '6.12';

/** What differs between the series, one field per difference. */
export interface LinuxSeries {
  readonly version: SimKernelVersion;
  /**
   * IOMMU_GET_HW_INFO flags iommufd accepts (EOPNOTSUPP for others). 7.x takes
   * IOMMU_HW_INFO_FLAG_INPUT_TYPE: in_data_type then asks the driver for a type (DEFAULT or its own).
   */
  readonly hwInfoFlags: number;
  /** 7.x reports IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED for a device that cannot use ATS (none of SimHost's can). */
  readonly reportsAtsNotSupported: boolean;
  /**
   * The flags iommufd_hwpt_paging_alloc accepts. 6.12 refuses FAULT_ID_VALID there (EOPNOTSUPP);
   * 7.x takes it, strips it before the driver and then looks the fault queue up (ENOENT), and adds ALLOC_PASID.
   */
  readonly pagingHwptFlags: number;
  /** The flags iommufd_hwpt_nested_alloc accepts (7.x adds ALLOC_PASID). */
  readonly nestedHwptFlags: number;
  /** VFIO type1 claims VFIO_TYPE1_NESTING_IOMMU (6.12; 6.13 removed it, so SET_IOMMU says ENODEV). */
  readonly type1Nesting: boolean;
  /**
   * VFIO_DEVICE_BIND_IOMMUFD as 7.x has it: struct vfio_device_bind_iommufd with token_uuid_ptr, the
   * VFIO_DEVICE_BIND_FLAG_TOKEN flag, and copy_struct_from_user's E2BIG for a non-zero tail.
   */
  readonly bindToken: boolean;
  /** VFIO_DEVICE_ATTACH/DETACH_IOMMUFD_PT take VFIO_DEVICE_ATTACH_PASID (7.x; EOPNOTSUPP without driver support). */
  readonly cdevPasid: boolean;
  /** MOCK_FLAGS_DEVICE_* the selftest's mock devices take (6.12: HUGE_IOVA; 7.x: PASID instead). */
  readonly mockDeviceFlags: number;
  /**
   * How IO page tables are built. 6.12: the mock keeps an xarray of 2 KiB pages (IOMMU_TEST_OP_DIRTY
   * indexes it by iova / page_size and counts the pages it marked), and drivers refuse to report
   * dirty bits while tracking is off. 7.x: every driver SimHost models uses the generic page table
   * (drivers/iommu/generic_pt): the mock maps any power-of-two page from 2 KiB, IOMMU_TEST_OP_DIRTY
   * marks the IOPTE holding each IOVA given and counts every bit, a dirty IOPTE made of contiguous
   * entries reports all but its last entry (record_dirty), bits set while tracking was on are
   * reported after it is turned off, and a mock paging HWPT may carry IOMMU_HWPT_DATA_SELFTEST data.
   */
  readonly pageTable: 'classic' | 'generic-pt';
  /**
   * IOMMU_HWPT_GET_DIRTY_BITMAP fails with what its walk met (a hole in the range, a driver refusing
   * to read): 6.12 stable returns it (iova_bitmap_for_each's result); 7.x ignores it and succeeds.
   */
  readonly reportsDirtyWalkErrors: boolean;
  /**
   * VFIO type1 checks the end of an IOVA or user range with check_add_overflow (7.x): size 0 is
   * EINVAL first, a range past the top of the space EOVERFLOW, and one ending exactly at the top
   * is fine. 6.12 refuses wrapping ranges with EINVAL, where it checks alignment (and GET_BITMAP
   * refuses a range that ends at the top).
   */
  readonly type1Overflow: boolean;
}

const SERIES: Record<SimKernelVersion, LinuxSeries> = {
  '6.12': {
    version: '6.12',
    hwInfoFlags: 0,
    reportsAtsNotSupported: false,
    pagingHwptFlags: IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
    nestedHwptFlags: IOMMU_HWPT_FAULT_ID_VALID,
    type1Nesting: true,
    bindToken: false,
    cdevPasid: false,
    mockDeviceFlags: MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_HUGE_IOVA,
    pageTable: 'classic',
    reportsDirtyWalkErrors: true,
    type1Overflow: false,
  },
  '7.2': {
    version: '7.2',
    hwInfoFlags: IOMMU_HW_INFO_FLAG_INPUT_TYPE,
    reportsAtsNotSupported: true,
    pagingHwptFlags: IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID,
    nestedHwptFlags: IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_PASID,
    type1Nesting: false,
    bindToken: true,
    cdevPasid: true,
    mockDeviceFlags: MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_PASID,
    pageTable: 'generic-pt',
    reportsDirtyWalkErrors: false,
    type1Overflow: true,
  },
};

/** The behaviour of a series; a TypeError names an unknown one. */
export function linuxSeries(version: SimKernelVersion = DEFAULT_KERNEL): LinuxSeries {
  const series = Object.hasOwn(SERIES, version) ? SERIES[version] : undefined;
  if (!series) throw new ConfigError(`SimHost: kernel must be one of ${Object.keys(SERIES).join(', ')}; got '${String(version)}'`);
  return series;
}
