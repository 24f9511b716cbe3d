// What `vmmkit caps` reports: the host's VFIO and KVM device nodes, the VFIO backends they make
// usable, and every VFIO device with the facts that decide how it attaches and migrates.
// Plain data (no bigints), so that `--json` prints it as it is.

/** A character device vmmkit opens. */
export interface DeviceNodeCaps {
  readonly path: string;
  readonly present: boolean;
  /** It opened read-write (as a VMM opens it). */
  readonly openable: boolean;
  /** Why it did not open: the errno name and message. */
  readonly error?: string;
}

/** Which VFIO backend. `iommufd-vfio-compat` is the legacy type1 backend on iommufd's compat container. */
export type VfioBackendId = 'legacy-type1' | 'iommufd' | 'iommufd-vfio-compat';

/** Whether a VFIO backend can be used here, and what the kernel said. */
export interface VfioBackendCaps {
  readonly id: VfioBackendId;
  /** The node it works on. */
  readonly path: string;
  readonly usable: boolean;
  /** VFIO_GET_API_VERSION, for the type1 container interfaces. */
  readonly apiVersion?: number;
  /** VFIO_CHECK_EXTENSION(VFIO_TYPE1_IOMMU) and (VFIO_TYPE1v2_IOMMU). */
  readonly type1?: boolean;
  readonly type1v2?: boolean;
  /** In words: what makes it usable, or why it is not. */
  readonly detail: string;
}

/** KVM, which a VMM runs its vCPUs on. */
export interface KvmCaps extends DeviceNodeCaps {
  /** KVM_GET_API_VERSION (12 on every kernel since 2.6.22). */
  readonly apiVersion?: number;
  readonly usable: boolean;
}

/** One VFIO device: a PCI function bound to vfio-pci, or a device cdev. */
export interface VfioDeviceCaps {
  /** The PCI address, or the cdev's name (`vfio3`) when no PCI function owns it. */
  readonly name: string;
  readonly bdf?: string;
  /** `/dev/vfio/devices/vfio<N>`, when the kernel has device cdevs. */
  readonly cdev?: string;
  /** The IOMMU group number. */
  readonly iommuGroup?: number;
  /** The backend the device was realized with to learn the facts below (absent: not probed). */
  readonly probedWith?: string;
  /** The IOMMU in front of it tracks dirty pages for it (type1 DIRTY_PAGES or an iommufd HWPT). */
  readonly iommuDirtyTracking?: boolean;
  /** IOMMU_GET_HW_INFO capabilities (hex), when the device was probed through iommufd. */
  readonly iommuHwCaps?: string;
  /** VFIO_MIGRATION_* flags: STOP_COPY, P2P, PRE_COPY; empty when it cannot migrate. */
  readonly migrationFlags?: readonly string[];
  /** It logs its own DMA (VFIO_DEVICE_FEATURE_DMA_LOGGING): device dirty tracking. */
  readonly deviceDirtyTracking?: boolean;
  /** Why it could not be probed. */
  readonly error?: string;
}

/** The whole report. */
export interface HostCaps {
  readonly host: 'linux' | 'sim';
  readonly nodes: readonly DeviceNodeCaps[];
  readonly backends: readonly VfioBackendCaps[];
  readonly kvm: KvmCaps;
  readonly devices: readonly VfioDeviceCaps[];
}
