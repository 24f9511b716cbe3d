// The IOMMUFD_TEST mock IOMMU and mock devices (drivers/iommu/iommufd/selftest.c): a driver
// whose domains have the aperture [16 MiB, 2 GiB - 1], 2 KiB IO pages and dirty tracking unless
// the device says NO_DIRTY. Linux 6.12's keeps an xarray of 2 KiB pages (1 MiB huge pages for
// HUGE_IOVA devices); 7.x's is built on the generic page table and maps any power-of-two page.

import {
  IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_DATA_SELFTEST, iommu_hwpt_selftest_7_2, MOCK_FLAGS_DEVICE_PASID,
  MOCK_IOMMUPT_DEFAULT, MOCK_IOMMUPT_HUGE, MOCK_PASID_WIDTH, IOMMU_HW_INFO_SELFTEST_REGVAL,
  IOMMU_HW_INFO_TYPE_SELFTEST, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_NEST_PARENT, iommu_test_hw_info,
  MOCK_APERTURE_LAST, MOCK_APERTURE_START, MOCK_FLAGS_DEVICE_HUGE_IOVA, MOCK_FLAGS_DEVICE_NO_DIRTY,
  MOCK_HUGE_PAGE_SIZE, MOCK_IO_PAGE_SIZE,
} from '@vmmkit/core/uapi';
import type { DmaTarget } from '../iommu/dma-target.js';
import type { LinuxSeries } from '../kernel/linux-series.js';
import { fail } from '../kernel/sim-errno.js';
import type { UserMemory } from '../memory/user-memory.js';
import { readStructFromUser } from './ucmd.js';
import type { HwptUserData, IommuClient, IommuUnit } from './iommu-unit.js';

/** A mock device (struct mock_dev): its own IOMMU group, flags from IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS. */
export class MockDevice implements IommuClient {
  static #count = 0;
  readonly name: string;
  readonly unit: IommuUnit;
  readonly maxPasidLog2: number;
  /** The page table its DMA would go through (mock devices issue no DMA of their own). */
  dmaTarget: DmaTarget | undefined;

  /** mock_dev_create: EINVAL for a flag the series' mock does not know. */
  constructor(
    series: LinuxSeries,
    readonly flags: number,
  ) {
    if (flags & ~series.mockDeviceFlags) fail('EINVAL', `unknown mock device flags 0x${(flags & ~series.mockDeviceFlags).toString(16)}`);
    this.unit = mockUnit(series);
    // pasid-num-bits: the mock IOMMU allows 2^MOCK_PASID_WIDTH PASIDs.
    this.maxPasidLog2 = flags & MOCK_FLAGS_DEVICE_PASID ? MOCK_PASID_WIDTH : 0;
    this.name = `iommufd_mock${MockDevice.#count++}`;
  }

  /** generic_device_group: every mock device is alone in its group. */
  get groupKey(): object {
    return this;
  }

  setDmaTarget(target: DmaTarget | undefined): void {
    this.dmaTarget = target;
  }
}

const flagsOf = (dev: IommuClient): number => (dev instanceof MockDevice ? dev.flags : 0);

/** What both mocks share. */
const common = {
  aperture: { start: MOCK_APERTURE_START, last: MOCK_APERTURE_LAST },
  nestParentCapable: true,
  reservedRegions: () => [],
  dirtyCapable: (dev: IommuClient) => !(flagsOf(dev) & MOCK_FLAGS_DEVICE_NO_DIRTY),
  hwInfo: () => ({ type: IOMMU_HW_INFO_TYPE_SELFTEST, data: iommu_test_hw_info.encode({ flags: 0, test_reg: IOMMU_HW_INFO_SELFTEST_REGVAL }) }),
} as const;

/** 6.12's mock_ops: domain_alloc_user takes NEST_PARENT and DIRTY_TRACKING and no data for a paging domain. */
const classicMock: IommuUnit = {
  ...common,
  name: 'the selftest mock IOMMU',
  allocFlags: IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  domainPageSizes: (dev) => (flagsOf(dev) & MOCK_FLAGS_DEVICE_HUGE_IOVA ? MOCK_IO_PAGE_SIZE | MOCK_HUGE_PAGE_SIZE : MOCK_IO_PAGE_SIZE),
};

/** Every power of two from the 2 KiB mock page: the AMDv1-format generic page table's sizes. */
const ANY_POWER_OF_TWO = ((1n << 56n) - 1n) & ~(MOCK_IO_PAGE_SIZE - 1n);

/**
 * 7.x's mock_domain_alloc_paging_flags: PASID too, and IOMMU_HWPT_DATA_SELFTEST data choosing the
 * page table (struct iommu_hwpt_selftest, copied with the extensible-struct rules).
 */
const genericPtMock: IommuUnit = {
  ...common,
  name: 'the selftest mock IOMMU (generic page table)',
  allocFlags: IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_PASID,
  domainPageSizes: () => ANY_POWER_OF_TWO,
  // The generic page table's map_pages refuses it (and WARNs).
  refusesNoAccess: true,
  pagingData(data: HwptUserData, memory: UserMemory): void {
    if (data.type !== IOMMU_HWPT_DATA_SELFTEST) fail('EOPNOTSUPP', `the mock takes no data of type ${data.type}`);
    const cfg = readStructFromUser(memory, data.uptr, data.len, iommu_hwpt_selftest_7_2, 'iotlb');
    const type = iommu_hwpt_selftest_7_2.get(cfg, 'pagetable_type');
    if (type === MOCK_IOMMUPT_HUGE) fail('EOPNOTSUPP', 'the mock\'s huge page table (MOCK_IOMMUPT_HUGE) is not modelled');
    if (type !== MOCK_IOMMUPT_DEFAULT) fail('EOPNOTSUPP', `no mock page table of type ${type}`);
  },
};

/** The mock IOMMU of a series (one unit per series, so identity compares units). */
export function mockUnit(series: LinuxSeries): IommuUnit {
  return series.pageTable === 'generic-pt' ? genericPtMock : classicMock;
}

/** Whether a unit is the selftest's mock IOMMU (get_md_pagetable's check). */
export function isMockUnit(unit: IommuUnit): boolean {
  return unit === classicMock || unit === genericPtMock;
}
