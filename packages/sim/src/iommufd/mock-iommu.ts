// The IOMMUFD_TEST mock IOMMU and mock devices (drivers/iommu/iommufd/selftest.c): a driver
// whose domains have the aperture [16 MiB, 2 GiB - 1], 2 KiB IO pages (1 MiB huge pages for
// HUGE_IOVA devices) and dirty tracking unless the device says NO_DIRTY.

import {
  IOMMU_HW_INFO_SELFTEST_REGVAL, IOMMU_HW_INFO_TYPE_SELFTEST, IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT, iommu_test_hw_info, MOCK_APERTURE_LAST, MOCK_APERTURE_START,
  MOCK_FLAGS_DEVICE_HUGE_IOVA, MOCK_FLAGS_DEVICE_NO_DIRTY, MOCK_HUGE_PAGE_SIZE, MOCK_IO_PAGE_SIZE,
} from '@vmmkit/core/uapi';
import type { DmaTarget } from '../iommu/dma-target.js';
import { fail } from '../kernel/sim-errno.js';
import type { IommuClient, IommuUnit } from './iommu-unit.js';

/** A mock device (struct mock_dev): its own IOMMU group, flags from IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS. */
export class MockDevice implements IommuClient {
  static #count = 0;
  readonly name: string;
  /** The page table its DMA would go through (mock devices issue no DMA of their own). */
  dmaTarget: DmaTarget | undefined;

  constructor(
    readonly unit: IommuUnit,
    readonly flags: number,
  ) {
    if (flags & ~(MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_HUGE_IOVA)) fail('EINVAL', `unknown mock device flags 0x${flags.toString(16)}`);
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

/** mock_ops: the mock IOMMU driver. */
export const mockUnit: IommuUnit = {
  name: 'the selftest mock IOMMU',
  aperture: { start: MOCK_APERTURE_START, last: MOCK_APERTURE_LAST },
  // mock_domain_alloc_user takes NEST_PARENT and DIRTY_TRACKING, not FAULT_ID_VALID.
  allocFlags: IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  nestParentCapable: true,
  domainPageSizes: (dev) => (flagsOf(dev) & MOCK_FLAGS_DEVICE_HUGE_IOVA ? MOCK_IO_PAGE_SIZE | MOCK_HUGE_PAGE_SIZE : MOCK_IO_PAGE_SIZE),
  reservedRegions: () => [],
  dirtyCapable: (dev) => !(flagsOf(dev) & MOCK_FLAGS_DEVICE_NO_DIRTY),
  hwInfo: () => ({ type: IOMMU_HW_INFO_TYPE_SELFTEST, data: iommu_test_hw_info.encode({ flags: 0, test_reg: IOMMU_HW_INFO_SELFTEST_REGVAL }) }),
};
