// drivers/iommu/iommufd/iommufd_test.h (Linux 6.12): the IOMMUFD_TEST selftest uAPI that
// CONFIG_IOMMUFD_TEST kernels (and SimHost) serve on /dev/iommu. Not a public header.

import { _IO } from './ioctl.js';
import { IOMMUFD_CMD_BASE, IOMMUFD_TYPE } from './iommufd.js';
import { defineStruct, u32, u64, union } from './struct.js';

/** The selftest operations (enum in iommufd_test.h), in header order. */
export const IOMMU_TEST_OP_ADD_RESERVED = 1;
export const IOMMU_TEST_OP_MOCK_DOMAIN = 2;
export const IOMMU_TEST_OP_MD_CHECK_MAP = 3;
export const IOMMU_TEST_OP_MD_CHECK_REFS = 4;
export const IOMMU_TEST_OP_CREATE_ACCESS = 5;
export const IOMMU_TEST_OP_DESTROY_ACCESS_PAGES = 6;
export const IOMMU_TEST_OP_ACCESS_PAGES = 7;
export const IOMMU_TEST_OP_ACCESS_RW = 8;
export const IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT = 9;
export const IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE = 10;
export const IOMMU_TEST_OP_ACCESS_REPLACE_IOAS = 11;
export const IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS = 12;
export const IOMMU_TEST_OP_DIRTY = 13;
export const IOMMU_TEST_OP_MD_CHECK_IOTLB = 14;
export const IOMMU_TEST_OP_TRIGGER_IOPF = 15;

/** The mock IOMMU's aperture. */
export const MOCK_APERTURE_START = 1n << 24n;
export const MOCK_APERTURE_LAST = (1n << 31n) - 1n;

/** Mock device flags (IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS). */
export const MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0;
export const MOCK_FLAGS_DEVICE_HUGE_IOVA = 1 << 1;

/** The mock IOMMU's IO page (PAGE_SIZE / 2) and huge IO page (512 IO pages) sizes, from selftest.c. */
export const MOCK_IO_PAGE_SIZE = 2048n;
export const MOCK_HUGE_PAGE_SIZE = 512n * MOCK_IO_PAGE_SIZE;

/** IOMMU_GET_HW_INFO of a mock device: its data type and the value of its test register. */
export const IOMMU_HW_INFO_TYPE_SELFTEST = 0xfeedbeef;
export const IOMMU_HW_INFO_SELFTEST_REGVAL = 0xdeadbeef;

/** IOMMU_HWPT_ALLOC's data_type for the mock driver's own data (struct iommu_hwpt_selftest). */
export const IOMMU_HWPT_DATA_SELFTEST = 0xdead;

/** The mock's HWPT data (6.12: nested domains only). Linux 7.2 adds pagetable_type: see linux-7.2.ts. */
export const iommu_hwpt_selftest = defineStruct('iommu_hwpt_selftest', { iotlb: u32 });

/** The hw_info data of a mock device. */
export const iommu_test_hw_info = defineStruct('iommu_test_hw_info', { flags: u32, test_reg: u32 });

// The anonymous structs of struct iommu_test_cmd's union, for the ops SimHost models.
export const iommu_test_cmd_add_reserved = defineStruct('iommu_test_cmd_add_reserved', { start: u64, length: u64 });
export const iommu_test_cmd_mock_domain = defineStruct('iommu_test_cmd_mock_domain', {
  out_stdev_id: u32, out_hwpt_id: u32, out_idev_id: u32,
});
export const iommu_test_cmd_mock_domain_flags = defineStruct('iommu_test_cmd_mock_domain_flags', {
  out_stdev_id: u32, out_hwpt_id: u32, out_idev_id: u32, dev_flags: u32,
});
export const iommu_test_cmd_mock_domain_replace = defineStruct('iommu_test_cmd_mock_domain_replace', { pt_id: u32 });
export const iommu_test_cmd_check_map = defineStruct('iommu_test_cmd_check_map', { iova: u64, length: u64, uptr: u64 });
export const iommu_test_cmd_memory_limit = defineStruct('iommu_test_cmd_memory_limit', { limit: u32 });
export const iommu_test_cmd_dirty = defineStruct('iommu_test_cmd_dirty', {
  flags: u32, iova: u64, length: u64, page_size: u64, uptr: u64, out_nr_dirty: u64,
});

/** struct iommu_test_cmd: `dirty` is the union's largest member, so the layout is the kernel's (72 bytes). */
export const iommu_test_cmd = defineStruct('iommu_test_cmd', {
  size: u32, op: u32, id: u32, __reserved: u32,
  ...union({
    add_reserved: iommu_test_cmd_add_reserved,
    mock_domain: iommu_test_cmd_mock_domain,
    mock_domain_flags: iommu_test_cmd_mock_domain_flags,
    mock_domain_replace: iommu_test_cmd_mock_domain_replace,
    check_map: iommu_test_cmd_check_map,
    memory_limit: iommu_test_cmd_memory_limit,
    dirty: iommu_test_cmd_dirty,
  }),
  last: u32,
});
export const IOMMU_TEST_CMD = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 32);

/** The selftest ioctl of an iommufd, by name. */
export const IOMMUFD_TEST_IOCTLS = { IOMMU_TEST_CMD } as const;
