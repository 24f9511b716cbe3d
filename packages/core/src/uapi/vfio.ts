// <linux/vfio.h> (Linux 6.12): constants, structs and ioctls in header order.

import { _IO } from './ioctl.js';
import { defineStruct, flex, flexBytes, s32, u8, u16, u32, u64, union } from './struct.js';

export const VFIO_API_VERSION = 0;

/** Extensions (VFIO_CHECK_EXTENSION) and IOMMU types (VFIO_SET_IOMMU). */
export const VFIO_TYPE1_IOMMU = 1;
export const VFIO_SPAPR_TCE_IOMMU = 2;
export const VFIO_TYPE1v2_IOMMU = 3;
export const VFIO_DMA_CC_IOMMU = 4;
export const VFIO_EEH = 5;
export const VFIO_TYPE1_NESTING_IOMMU = 6;
export const VFIO_SPAPR_TCE_v2_IOMMU = 7;
export const VFIO_NOIOMMU_IOMMU = 8;
export const VFIO_UNMAP_ALL = 9;
export const VFIO_UPDATE_VADDR = 10;

export const VFIO_TYPE = 0x3b; // ';'
export const VFIO_BASE = 100;

export const vfio_info_cap_header = defineStruct('vfio_info_cap_header', { id: u16, version: u16, next: u32 });

// -------- IOCTLs for VFIO file descriptor (/dev/vfio/vfio) --------
export const VFIO_GET_API_VERSION = _IO(VFIO_TYPE, VFIO_BASE + 0);
export const VFIO_CHECK_EXTENSION = _IO(VFIO_TYPE, VFIO_BASE + 1);
export const VFIO_SET_IOMMU = _IO(VFIO_TYPE, VFIO_BASE + 2);

// -------- IOCTLs for GROUP file descriptors (/dev/vfio/$GROUP) --------
export const VFIO_GROUP_FLAGS_VIABLE = 1 << 0;
export const VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1;
export const vfio_group_status = defineStruct('vfio_group_status', { argsz: u32, flags: u32 });
export const VFIO_GROUP_GET_STATUS = _IO(VFIO_TYPE, VFIO_BASE + 3);
export const VFIO_GROUP_SET_CONTAINER = _IO(VFIO_TYPE, VFIO_BASE + 4);
export const VFIO_GROUP_UNSET_CONTAINER = _IO(VFIO_TYPE, VFIO_BASE + 5);
export const VFIO_GROUP_GET_DEVICE_FD = _IO(VFIO_TYPE, VFIO_BASE + 6);

// -------- IOCTLs for DEVICE file descriptors --------
export const VFIO_DEVICE_FLAGS_RESET = 1 << 0;
export const VFIO_DEVICE_FLAGS_PCI = 1 << 1;
export const VFIO_DEVICE_FLAGS_PLATFORM = 1 << 2;
export const VFIO_DEVICE_FLAGS_AMBA = 1 << 3;
export const VFIO_DEVICE_FLAGS_CCW = 1 << 4;
export const VFIO_DEVICE_FLAGS_AP = 1 << 5;
export const VFIO_DEVICE_FLAGS_FSL_MC = 1 << 6;
export const VFIO_DEVICE_FLAGS_CAPS = 1 << 7;
export const VFIO_DEVICE_FLAGS_CDX = 1 << 8;
export const vfio_device_info = defineStruct('vfio_device_info', {
  argsz: u32, flags: u32, num_regions: u32, num_irqs: u32, cap_offset: u32, pad: u32,
});
export const VFIO_DEVICE_GET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 7);

export const VFIO_REGION_INFO_FLAG_READ = 1 << 0;
export const VFIO_REGION_INFO_FLAG_WRITE = 1 << 1;
export const VFIO_REGION_INFO_FLAG_MMAP = 1 << 2;
export const VFIO_REGION_INFO_FLAG_CAPS = 1 << 3;
export const vfio_region_info = defineStruct('vfio_region_info', {
  argsz: u32, flags: u32, index: u32, cap_offset: u32, size: u64, offset: u64,
});
export const VFIO_DEVICE_GET_REGION_INFO = _IO(VFIO_TYPE, VFIO_BASE + 8);

/** Region capabilities, chained from vfio_region_info.cap_offset. */
export const VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1;
export const vfio_region_sparse_mmap_area = defineStruct('vfio_region_sparse_mmap_area', { offset: u64, size: u64 });
export const vfio_region_info_cap_sparse_mmap = defineStruct('vfio_region_info_cap_sparse_mmap', {
  header: vfio_info_cap_header, nr_areas: u32, reserved: u32, areas: flex(vfio_region_sparse_mmap_area),
});
export const VFIO_REGION_INFO_CAP_TYPE = 2;
export const vfio_region_info_cap_type = defineStruct('vfio_region_info_cap_type', {
  header: vfio_info_cap_header, type: u32, subtype: u32,
});
export const VFIO_REGION_INFO_CAP_MSIX_MAPPABLE = 3;

export const VFIO_IRQ_INFO_EVENTFD = 1 << 0;
export const VFIO_IRQ_INFO_MASKABLE = 1 << 1;
export const VFIO_IRQ_INFO_AUTOMASKED = 1 << 2;
export const VFIO_IRQ_INFO_NORESIZE = 1 << 3;
export const vfio_irq_info = defineStruct('vfio_irq_info', { argsz: u32, flags: u32, index: u32, count: u32 });
export const VFIO_DEVICE_GET_IRQ_INFO = _IO(VFIO_TYPE, VFIO_BASE + 9);

export const VFIO_IRQ_SET_DATA_NONE = 1 << 0;
export const VFIO_IRQ_SET_DATA_BOOL = 1 << 1;
export const VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2;
export const VFIO_IRQ_SET_ACTION_MASK = 1 << 3;
export const VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4;
export const VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5;
export const VFIO_IRQ_SET_DATA_TYPE_MASK = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD;
export const VFIO_IRQ_SET_ACTION_TYPE_MASK =
  VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER;
export const vfio_irq_set = defineStruct('vfio_irq_set', {
  argsz: u32, flags: u32, index: u32, start: u32, count: u32, data: flexBytes,
});
export const VFIO_DEVICE_SET_IRQS = _IO(VFIO_TYPE, VFIO_BASE + 10);

export const VFIO_DEVICE_RESET = _IO(VFIO_TYPE, VFIO_BASE + 11);

/** vfio-pci region and IRQ indexes. */
export const VFIO_PCI_BAR0_REGION_INDEX = 0;
export const VFIO_PCI_BAR1_REGION_INDEX = 1;
export const VFIO_PCI_BAR2_REGION_INDEX = 2;
export const VFIO_PCI_BAR3_REGION_INDEX = 3;
export const VFIO_PCI_BAR4_REGION_INDEX = 4;
export const VFIO_PCI_BAR5_REGION_INDEX = 5;
export const VFIO_PCI_ROM_REGION_INDEX = 6;
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;
export const VFIO_PCI_VGA_REGION_INDEX = 8;
export const VFIO_PCI_NUM_REGIONS = 9;
export const VFIO_PCI_INTX_IRQ_INDEX = 0;
export const VFIO_PCI_MSI_IRQ_INDEX = 1;
export const VFIO_PCI_MSIX_IRQ_INDEX = 2;
export const VFIO_PCI_ERR_IRQ_INDEX = 3;
export const VFIO_PCI_REQ_IRQ_INDEX = 4;
export const VFIO_PCI_NUM_IRQS = 5;

/** PCI hot reset: the affected devices, as group ids or (with DEV_ID) iommufd device ids. */
export const vfio_pci_dependent_device = defineStruct('vfio_pci_dependent_device', {
  ...union({ group_id: u32, devid: u32 }), segment: u16, bus: u8, devfn: u8,
});
export const VFIO_PCI_DEVID_OWNED = 0;
export const VFIO_PCI_DEVID_NOT_OWNED = -1;
export const VFIO_PCI_HOT_RESET_FLAG_DEV_ID = 1 << 0;
export const VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED = 1 << 1;
export const vfio_pci_hot_reset_info = defineStruct('vfio_pci_hot_reset_info', {
  argsz: u32, flags: u32, count: u32, devices: flex(vfio_pci_dependent_device),
});
export const VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 12);
export const vfio_pci_hot_reset = defineStruct('vfio_pci_hot_reset', {
  argsz: u32, flags: u32, count: u32, group_fds: flex(s32),
});
export const VFIO_DEVICE_PCI_HOT_RESET = _IO(VFIO_TYPE, VFIO_BASE + 13);

/** VFIO_DEVICE_FEATURE: a feature number in the low 16 bits of flags plus GET/SET/PROBE. */
export const vfio_device_feature = defineStruct('vfio_device_feature', { argsz: u32, flags: u32, data: flexBytes });
export const VFIO_DEVICE_FEATURE_MASK = 0xffff;
export const VFIO_DEVICE_FEATURE_GET = 1 << 16;
export const VFIO_DEVICE_FEATURE_SET = 1 << 17;
export const VFIO_DEVICE_FEATURE_PROBE = 1 << 18;
export const VFIO_DEVICE_FEATURE = _IO(VFIO_TYPE, VFIO_BASE + 17);

export const VFIO_DEVICE_BIND_IOMMUFD = _IO(VFIO_TYPE, VFIO_BASE + 18);
export const vfio_device_bind_iommufd = defineStruct('vfio_device_bind_iommufd', {
  argsz: u32, flags: u32, iommufd: s32, out_devid: u32,
});
export const vfio_device_attach_iommufd_pt = defineStruct('vfio_device_attach_iommufd_pt', {
  argsz: u32, flags: u32, pt_id: u32,
});
export const VFIO_DEVICE_ATTACH_IOMMUFD_PT = _IO(VFIO_TYPE, VFIO_BASE + 19);
export const vfio_device_detach_iommufd_pt = defineStruct('vfio_device_detach_iommufd_pt', { argsz: u32, flags: u32 });
export const VFIO_DEVICE_DETACH_IOMMUFD_PT = _IO(VFIO_TYPE, VFIO_BASE + 20);

export const VFIO_DEVICE_FEATURE_PCI_VF_TOKEN = 0;

/** Migration v2. */
export const vfio_device_feature_migration = defineStruct('vfio_device_feature_migration', { flags: u64 });
export const VFIO_MIGRATION_STOP_COPY = 1 << 0;
export const VFIO_MIGRATION_P2P = 1 << 1;
export const VFIO_MIGRATION_PRE_COPY = 1 << 2;
export const VFIO_DEVICE_FEATURE_MIGRATION = 1;

export const vfio_device_feature_mig_state = defineStruct('vfio_device_feature_mig_state', {
  device_state: u32, data_fd: s32,
});
export const VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE = 2;

/** enum vfio_device_mig_state */
export const VFIO_DEVICE_STATE_ERROR = 0;
export const VFIO_DEVICE_STATE_STOP = 1;
export const VFIO_DEVICE_STATE_RUNNING = 2;
export const VFIO_DEVICE_STATE_STOP_COPY = 3;
export const VFIO_DEVICE_STATE_RESUMING = 4;
export const VFIO_DEVICE_STATE_RUNNING_P2P = 5;
export const VFIO_DEVICE_STATE_PRE_COPY = 6;
export const VFIO_DEVICE_STATE_PRE_COPY_P2P = 7;

/** VFIO_MIG_GET_PRECOPY_INFO, on a data fd in PRE_COPY or PRE_COPY_P2P. */
export const vfio_precopy_info = defineStruct('vfio_precopy_info', {
  argsz: u32, flags: u32, initial_bytes: u64, dirty_bytes: u64,
});
export const VFIO_MIG_GET_PRECOPY_INFO = _IO(VFIO_TYPE, VFIO_BASE + 21);

export const VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY = 3;
export const VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP = 4;
export const VFIO_DEVICE_FEATURE_LOW_POWER_EXIT = 5;

/** Device DMA logging (device dirty tracking). `ranges` and `bitmap` are user pointers. */
export const vfio_device_feature_dma_logging_control = defineStruct('vfio_device_feature_dma_logging_control', {
  page_size: u64, num_ranges: u32, __reserved: u32, ranges: u64,
});
export const vfio_device_feature_dma_logging_range = defineStruct('vfio_device_feature_dma_logging_range', {
  iova: u64, length: u64,
});
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_START = 6;
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP = 7;
export const vfio_device_feature_dma_logging_report = defineStruct('vfio_device_feature_dma_logging_report', {
  iova: u64, length: u64, page_size: u64, bitmap: u64,
});
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT = 8;

export const vfio_device_feature_mig_data_size = defineStruct('vfio_device_feature_mig_data_size', {
  stop_copy_length: u64,
});
export const VFIO_DEVICE_FEATURE_MIG_DATA_SIZE = 9;

// -------- API for Type1 VFIO IOMMU --------
export const VFIO_IOMMU_INFO_PGSIZES = 1 << 0;
export const VFIO_IOMMU_INFO_CAPS = 1 << 1;
export const vfio_iommu_type1_info = defineStruct('vfio_iommu_type1_info', {
  argsz: u32, flags: u32, iova_pgsizes: u64, cap_offset: u32, pad: u32,
});

export const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;
export const vfio_iova_range = defineStruct('vfio_iova_range', { start: u64, end: u64 });
export const vfio_iommu_type1_info_cap_iova_range = defineStruct('vfio_iommu_type1_info_cap_iova_range', {
  header: vfio_info_cap_header, nr_iovas: u32, reserved: u32, iova_ranges: flex(vfio_iova_range),
});

export const VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2;
export const vfio_iommu_type1_info_cap_migration = defineStruct('vfio_iommu_type1_info_cap_migration', {
  header: vfio_info_cap_header, flags: u32, pgsize_bitmap: u64, max_dirty_bitmap_size: u64,
});

export const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;
export const vfio_iommu_type1_info_dma_avail = defineStruct('vfio_iommu_type1_info_dma_avail', {
  header: vfio_info_cap_header, avail: u32,
});
export const VFIO_IOMMU_GET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 12);

export const VFIO_DMA_MAP_FLAG_READ = 1 << 0;
export const VFIO_DMA_MAP_FLAG_WRITE = 1 << 1;
export const VFIO_DMA_MAP_FLAG_VADDR = 1 << 2;
export const vfio_iommu_type1_dma_map = defineStruct('vfio_iommu_type1_dma_map', {
  argsz: u32, flags: u32, vaddr: u64, iova: u64, size: u64,
});
export const VFIO_IOMMU_MAP_DMA = _IO(VFIO_TYPE, VFIO_BASE + 13);

export const vfio_bitmap = defineStruct('vfio_bitmap', { pgsize: u64, size: u64, data: u64 });

export const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0;
export const VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1;
export const VFIO_DMA_UNMAP_FLAG_VADDR = 1 << 2;
export const vfio_iommu_type1_dma_unmap = defineStruct('vfio_iommu_type1_dma_unmap', {
  argsz: u32, flags: u32, iova: u64, size: u64, data: flexBytes,
});
export const VFIO_IOMMU_UNMAP_DMA = _IO(VFIO_TYPE, VFIO_BASE + 14);

export const VFIO_IOMMU_DIRTY_PAGES_FLAG_START = 1 << 0;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = 1 << 1;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 1 << 2;
export const vfio_iommu_type1_dirty_bitmap = defineStruct('vfio_iommu_type1_dirty_bitmap', {
  argsz: u32, flags: u32, data: flexBytes,
});
export const vfio_iommu_type1_dirty_bitmap_get = defineStruct('vfio_iommu_type1_dirty_bitmap_get', {
  iova: u64, size: u64, bitmap: vfio_bitmap,
});
export const VFIO_IOMMU_DIRTY_PAGES = _IO(VFIO_TYPE, VFIO_BASE + 17);

/** The ioctls of a container fd (/dev/vfio/vfio, or iommufd's compat container), by name. */
export const VFIO_CONTAINER_IOCTLS = {
  VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_SET_IOMMU, VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_UNMAP_DMA, VFIO_IOMMU_DIRTY_PAGES,
} as const;

/** The ioctls of a group fd (/dev/vfio/<group>), by name. */
export const VFIO_GROUP_IOCTLS = {
  VFIO_GROUP_GET_STATUS, VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER, VFIO_GROUP_GET_DEVICE_FD,
} as const;

/** The ioctls of a device fd (from a group, or a cdev /dev/vfio/devices/vfio<N>), by name. */
export const VFIO_DEVICE_IOCTLS = {
  VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_REGION_INFO, VFIO_DEVICE_GET_IRQ_INFO, VFIO_DEVICE_SET_IRQS,
  VFIO_DEVICE_RESET, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, VFIO_DEVICE_PCI_HOT_RESET, VFIO_DEVICE_FEATURE,
  VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_DETACH_IOMMUFD_PT,
} as const;

/** The ioctls of a migration data fd, by name. */
export const VFIO_MIG_DATA_IOCTLS = { VFIO_MIG_GET_PRECOPY_INFO } as const;
