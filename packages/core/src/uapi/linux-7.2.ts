// What the Linux 7.2 headers add to the 6.12 facts the other uapi files declare (<linux/iommufd.h>,
// <linux/vfio.h>, iommufd_test.h): new constants, and the structs whose 7.2 layout grew. The 6.12
// layouts keep the plain names; the ABI test checks each series' facts against its own layouts.

import { defineStruct, s32, u32, u64, u8, array, union } from './struct.js';

/** enum iommufd_hwpt_alloc_flags: a HWPT any PASID of the device may attach to. */
export const IOMMU_HWPT_ALLOC_PASID = 1 << 3;

/** enum iommu_hw_info_type: the input asking for the driver's default type (same value as NONE). */
export const IOMMU_HW_INFO_TYPE_DEFAULT = 0;

/** enum iommufd_hw_capabilities, beyond DIRTY_TRACKING. */
export const IOMMU_HW_CAP_PCI_PASID_EXEC = 1 << 1;
export const IOMMU_HW_CAP_PCI_PASID_PRIV = 1 << 2;
export const IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED = 1 << 3;

/** enum iommufd_hw_info_flags: in_data_type asks for a particular hw_info type. */
export const IOMMU_HW_INFO_FLAG_INPUT_TYPE = 1 << 0;

/** struct iommu_hw_info in 7.2: out_data_type shares its place with the input in_data_type. */
export const iommu_hw_info_7_2 = defineStruct('iommu_hw_info', {
  size: u32, flags: u32, dev_id: u32, data_len: u32, data_uptr: u64,
  ...union({ in_data_type: u32, out_data_type: u32 }),
  out_max_pasid_log2: u8, __reserved: array(u8, 3), out_capabilities: u64,
});

/** VFIO_DEVICE_BIND_IOMMUFD: token_uuid_ptr is valid (a VF token for SR-IOV). */
export const VFIO_DEVICE_BIND_FLAG_TOKEN = 1 << 0;
/** VFIO_DEVICE_ATTACH_IOMMUFD_PT / DETACH: the pasid member is valid. */
export const VFIO_DEVICE_ATTACH_PASID = 1 << 0;
export const VFIO_DEVICE_DETACH_PASID = 1 << 0;

export const vfio_device_bind_iommufd_7_2 = defineStruct('vfio_device_bind_iommufd', {
  argsz: u32, flags: u32, iommufd: s32, out_devid: u32, token_uuid_ptr: u64,
});
export const vfio_device_attach_iommufd_pt_7_2 = defineStruct('vfio_device_attach_iommufd_pt', {
  argsz: u32, flags: u32, pt_id: u32, pasid: u32,
});
export const vfio_device_detach_iommufd_pt_7_2 = defineStruct('vfio_device_detach_iommufd_pt', { argsz: u32, flags: u32, pasid: u32 });

/** struct vfio_precopy_info flags: new initial data is present. */
export const VFIO_PRECOPY_INFO_REINIT = 1 << 0;
/** VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2: the precopy info with REINIT reported. */
export const VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2 = 12;

// iommufd_test.h (CONFIG_IOMMUFD_TEST): 7.2's mock is built on the generic page table.

/** A mock device that supports PASID (pasid-num-bits = MOCK_PASID_WIDTH); 6.12's HUGE_IOVA (1 << 1) is gone. */
export const MOCK_FLAGS_DEVICE_PASID = 1 << 2;
export const MOCK_PASID_WIDTH = 20;
/** The mock's IO page (6.12 called it MOCK_IO_PAGE_SIZE inside selftest.c). */
export const MOCK_PAGE_SIZE = 2048;
/** struct iommu_hwpt_selftest pagetable_type: the mock page table of a paging HWPT allocated with data. */
export const MOCK_IOMMUPT_DEFAULT = 0;
export const MOCK_IOMMUPT_HUGE = 1;

export const iommu_hwpt_selftest_7_2 = defineStruct('iommu_hwpt_selftest', { iotlb: u32, pagetable_type: u32 });

/** The structs whose 7.2 layout differs from the 6.12 one declared under the plain name, by name. */
export const LINUX_7_2_STRUCTS = {
  iommu_hw_info: iommu_hw_info_7_2,
  vfio_device_bind_iommufd: vfio_device_bind_iommufd_7_2,
  vfio_device_attach_iommufd_pt: vfio_device_attach_iommufd_pt_7_2,
  vfio_device_detach_iommufd_pt: vfio_device_detach_iommufd_pt_7_2,
  iommu_hwpt_selftest: iommu_hwpt_selftest_7_2,
} as const;
