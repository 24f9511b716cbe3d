// The machine description SimHost is built from.

import type { SimPciModel } from './devices/pci-model.js';
import type { SimKernelVersion } from './kernel/linux-series.js';

/** An IOMMU hardware unit. Devices behind different units never share an IO page table. */
export interface SimIommuConfig {
  readonly id: string;
  /** Whether the IOMMU can track dirty IOPTEs (IOMMU_HW_CAP_DIRTY_TRACKING). Default false. */
  readonly dirtyTracking?: boolean;
  /** Address width in bits; the aperture is [0, 2^awBits - 1]. Default 48. */
  readonly awBits?: number;
  /** Supported IO page sizes as a bitmap. Default 4 KiB | 2 MiB | 1 GiB. */
  readonly pageSizes?: bigint;
  /** IOVA ranges no mapping may use. Default: the x86 MSI window [0xfee00000, 0xfeefffff]. */
  readonly reservedRegions?: readonly { readonly start: bigint; readonly last: bigint }[];
}

/** Migration flags a device model offers (VFIO_MIGRATION_*). */
export type SimMigrationFlag = 'STOP_COPY' | 'P2P' | 'PRE_COPY';

/** A device of the machine. */
export interface SimDeviceConfig {
  /** PCI address `DDDD:BB:DD.F` of a physical function. */
  readonly bdf?: string;
  /** UUID of a mediated device (mdev) instead of a PCI function. */
  readonly uuid?: string;
  /** The device model: a built-in name or a factory for your own. */
  readonly model: string | ((config: SimDeviceConfig) => SimPciModel);
  /** The IOMMU unit in front of the device (PCI devices). Default: the first IOMMU. */
  readonly iommu?: string;
  /** The IOMMU group number. Default: a group of its own. */
  readonly group?: number;
  /** The bound driver. Only vfio-pci devices can be opened; a `host` device makes its group not viable. */
  readonly driver?: 'vfio-pci' | 'host';
  /** VFIO migration v2 support. Default: none. */
  readonly migration?: {
    readonly flags: readonly SimMigrationFlag[];
    /** Device DMA logging (device dirty tracking). */
    readonly dmaLogging?: boolean;
    /**
     * What RESUMING -> STOP leaves when the data written does not load: 'error' (the ERROR state,
     * the session ended, as mlx5 does; the default) or 'resuming' (still RESUMING with the data
     * so far, as the mtty sample does). The uAPI allows both.
     */
    readonly resumeFailure?: 'error' | 'resuming';
  };
  /** Whether the device supports function level reset (VFIO_DEVICE_FLAGS_RESET). Default true. */
  readonly resettable?: boolean;
  /**
   * Whether a slot or bus reset can reach the device (PCI hot reset). Default true; false for a
   * device on a root bus, as QEMU's q35 puts them, where hot reset says ENODEV.
   */
  readonly busReset?: boolean;
  /** Model-specific options. */
  readonly options?: Readonly<Record<string, unknown>>;
}

/** Which kernel interfaces exist. Each defaults to true. */
export interface SimFeatures {
  /** `/dev/iommu` (CONFIG_IOMMUFD). */
  readonly iommufd?: boolean;
  /** `/dev/vfio/vfio` and group files (CONFIG_VFIO_CONTAINER / VFIO_GROUP). */
  readonly vfioContainer?: boolean;
  /** `/dev/vfio/devices/vfio<N>` (CONFIG_VFIO_DEVICE_CDEV). */
  readonly cdev?: boolean;
  /** `IOMMU_TEST_CMD` (CONFIG_IOMMUFD_TEST). */
  readonly selftest?: boolean;
}

export interface SimHostConfig {
  readonly iommus?: readonly SimIommuConfig[];
  readonly devices?: readonly SimDeviceConfig[];
  readonly features?: SimFeatures;
  /** RLIMIT_NOFILE. Default 1024. */
  readonly fdLimit?: number;
  /**
   * Anonymous memory is backed by transparent huge pages, so pinned ranges are physically
   * contiguous: IO page tables use 2 MiB / 1 GiB IOPTEs where IOVA and address align, and IOMMU
   * dirty tracking reports whole huge IOPTEs, as on a THP host. Default false: 4 KiB IOPTEs.
   */
  readonly transparentHugePages?: boolean;
  /**
   * Where the simulated process lives beside a real one (HybridHost): its first fd number (so
   * that its fds never collide with the real process's, which stay below RLIMIT_NOFILE) and the
   * address its own mappings start at (above the 47-bit user space the real kernel hands out, so
   * they never collide with real mappings it adopts). Defaults: fd 3 and 0x7f0000000000, as a
   * process of its own.
   */
  readonly process?: { readonly firstFd?: number; readonly mappingBase?: bigint };

  // ---- which Linux -----------------------------------------------------------------------------
  /**
   * The Linux series to model where they differ: '6.12' (the default: the long-term kernel most
   * VFIO hosts run) or '7.2' (the kernel tier's). kernel/linux-series.ts lists every difference.
   */
  readonly kernel?: SimKernelVersion;
}
