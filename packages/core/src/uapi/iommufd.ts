// <linux/iommufd.h> (Linux 6.12): constants, structs and ioctls in header order.

import { _IO } from './ioctl.js';
import { defineStruct, u8, u16, u32, u64, array } from './struct.js';

export const IOMMUFD_TYPE = 0x3b; // ';'
export const IOMMUFD_CMD_BASE = 0x80;

export const iommu_destroy = defineStruct('iommu_destroy', { size: u32, id: u32 });
export const IOMMU_DESTROY = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 0);

export const iommu_ioas_alloc = defineStruct('iommu_ioas_alloc', { size: u32, flags: u32, out_ioas_id: u32 });
export const IOMMU_IOAS_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 1);

export const iommu_iova_range = defineStruct('iommu_iova_range', { start: u64, last: u64 });

export const iommu_ioas_iova_ranges = defineStruct('iommu_ioas_iova_ranges', {
  size: u32, ioas_id: u32, num_iovas: u32, __reserved: u32, allowed_iovas: u64, out_iova_alignment: u64,
});
export const IOMMU_IOAS_IOVA_RANGES = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 4);

export const iommu_ioas_allow_iovas = defineStruct('iommu_ioas_allow_iovas', {
  size: u32, ioas_id: u32, num_iovas: u32, __reserved: u32, allowed_iovas: u64,
});
export const IOMMU_IOAS_ALLOW_IOVAS = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 2);

/** enum iommufd_ioas_map_flags */
export const IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0;
export const IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
export const IOMMU_IOAS_MAP_READABLE = 1 << 2;

export const iommu_ioas_map = defineStruct('iommu_ioas_map', {
  size: u32, flags: u32, ioas_id: u32, __reserved: u32, user_va: u64, length: u64, iova: u64,
});
export const IOMMU_IOAS_MAP = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 5);

export const iommu_ioas_copy = defineStruct('iommu_ioas_copy', {
  size: u32, flags: u32, dst_ioas_id: u32, src_ioas_id: u32, length: u64, dst_iova: u64, src_iova: u64,
});
export const IOMMU_IOAS_COPY = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 3);

export const iommu_ioas_unmap = defineStruct('iommu_ioas_unmap', { size: u32, ioas_id: u32, iova: u64, length: u64 });
export const IOMMU_IOAS_UNMAP = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 6);

/** enum iommufd_option */
export const IOMMU_OPTION_RLIMIT_MODE = 0;
export const IOMMU_OPTION_HUGE_PAGES = 1;
/** enum iommufd_option_ops */
export const IOMMU_OPTION_OP_SET = 0;
export const IOMMU_OPTION_OP_GET = 1;

export const iommu_option = defineStruct('iommu_option', {
  size: u32, option_id: u32, op: u16, __reserved: u16, object_id: u32, val64: u64,
});
export const IOMMU_OPTION = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 7);

/** enum iommufd_vfio_ioas_op */
export const IOMMU_VFIO_IOAS_GET = 0;
export const IOMMU_VFIO_IOAS_SET = 1;
export const IOMMU_VFIO_IOAS_CLEAR = 2;

export const iommu_vfio_ioas = defineStruct('iommu_vfio_ioas', { size: u32, ioas_id: u32, op: u16, __reserved: u16 });
export const IOMMU_VFIO_IOAS = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 8);

/** enum iommufd_hwpt_alloc_flags */
export const IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0;
export const IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;
export const IOMMU_HWPT_FAULT_ID_VALID = 1 << 2;

/** enum iommu_hwpt_vtd_s1_flags */
export const IOMMU_VTD_S1_SRE = 1 << 0;
export const IOMMU_VTD_S1_EAFE = 1 << 1;
export const IOMMU_VTD_S1_WPE = 1 << 2;

export const iommu_hwpt_vtd_s1 = defineStruct('iommu_hwpt_vtd_s1', {
  flags: u64, pgtbl_addr: u64, addr_width: u32, __reserved: u32,
});

/** enum iommu_hwpt_data_type */
export const IOMMU_HWPT_DATA_NONE = 0;
export const IOMMU_HWPT_DATA_VTD_S1 = 1;

export const iommu_hwpt_alloc = defineStruct('iommu_hwpt_alloc', {
  size: u32, flags: u32, dev_id: u32, pt_id: u32, out_hwpt_id: u32, __reserved: u32,
  data_type: u32, data_len: u32, data_uptr: u64, fault_id: u32, __reserved2: u32,
});
export const IOMMU_HWPT_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 9);

/** enum iommu_hw_info_vtd_flags */
export const IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 = 1 << 0;

export const iommu_hw_info_vtd = defineStruct('iommu_hw_info_vtd', {
  flags: u32, __reserved: u32, cap_reg: u64, ecap_reg: u64,
});

/** enum iommu_hw_info_type */
export const IOMMU_HW_INFO_TYPE_NONE = 0;
export const IOMMU_HW_INFO_TYPE_INTEL_VTD = 1;

/**
 * enum iommufd_hw_capabilities. Later kernels add bits (7.2 reports 0x8,
 * IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED, on QEMU's VT-d), so test bits, never compare the whole.
 */
export const IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0;

export const iommu_hw_info = defineStruct('iommu_hw_info', {
  size: u32, flags: u32, dev_id: u32, data_len: u32, data_uptr: u64,
  out_data_type: u32, out_max_pasid_log2: u8, __reserved: array(u8, 3), out_capabilities: u64,
});
export const IOMMU_GET_HW_INFO = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 10);

/** enum iommufd_hwpt_set_dirty_tracking_flags */
export const IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1;

export const iommu_hwpt_set_dirty_tracking = defineStruct('iommu_hwpt_set_dirty_tracking', {
  size: u32, flags: u32, hwpt_id: u32, __reserved: u32,
});
export const IOMMU_HWPT_SET_DIRTY_TRACKING = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 11);

/** enum iommufd_hwpt_get_dirty_bitmap_flags */
export const IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1;

export const iommu_hwpt_get_dirty_bitmap = defineStruct('iommu_hwpt_get_dirty_bitmap', {
  size: u32, hwpt_id: u32, flags: u32, __reserved: u32, iova: u64, length: u64, page_size: u64, data: u64,
});
export const IOMMU_HWPT_GET_DIRTY_BITMAP = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 12);

/** The ioctls of an iommufd, by name (for error messages). */
export const IOMMUFD_IOCTLS = {
  IOMMU_DESTROY, IOMMU_IOAS_ALLOC, IOMMU_IOAS_ALLOW_IOVAS, IOMMU_IOAS_COPY, IOMMU_IOAS_IOVA_RANGES,
  IOMMU_IOAS_MAP, IOMMU_IOAS_UNMAP, IOMMU_OPTION, IOMMU_VFIO_IOAS, IOMMU_HWPT_ALLOC, IOMMU_GET_HW_INFO,
  IOMMU_HWPT_SET_DIRTY_TRACKING, IOMMU_HWPT_GET_DIRTY_BITMAP,
} as const;
