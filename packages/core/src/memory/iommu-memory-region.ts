// A guest IOMMU's translated window (QEMU's IOMMUMemoryRegion): attributes a VMM asks before
// migrating (DMA translation on or off, the largest IOVA) and map/unmap notifications.

/** An IOVA range the guest mapped to guest physical memory. */
export interface IommuMapping {
  readonly iova: bigint;
  readonly size: bigint;
  /** The guest physical address the IOVA translates to. */
  readonly gpa: bigint;
  readonly readonly: boolean;
}

/** Told when the guest maps or unmaps IOVA through its IOMMU. */
export interface IommuNotifier {
  map(mapping: IommuMapping): void | Promise<void>;
  /** `gpa` is where the range translated to before the unmap (QEMU's translated_addr). */
  unmap(mapping: IommuMapping): void | Promise<void>;
}

/** The attributes a guest IOMMU reports (IOMMU_ATTR_DMA_TRANSLATION, IOMMU_ATTR_MAX_IOVA). */
export interface IommuAttributes {
  /** False when the guest IOMMU does interrupt remapping only: DMA is identity mapped. */
  readonly dmaTranslation: boolean;
  /** The largest IOVA the guest can map; undefined when the model reports no address-width limit. */
  readonly maxIova?: bigint;
}

/** A guest IOMMU's translated window in an address space. */
export interface IommuMemoryRegion {
  readonly name: string;
  readonly attributes: IommuAttributes;
  /** The current mappings, in IOVA order (what a dirty sync translates IOVAs through). */
  mappings(): readonly IommuMapping[];
  /** Add a notifier; the current mappings are replayed to it first. */
  addNotifier(notifier: IommuNotifier): Promise<void>;
  removeNotifier(notifier: IommuNotifier): Promise<void>;
}
