// The host IOMMU behind a VFIO device (QEMU's HostIOMMUDevice): capabilities a guest IOMMU model
// and migration consult. Each backend realizes it its own way during attach (not for mdevs).

/** Capabilities of a host IOMMU as seen through one device. */
export interface HostIommuDeviceCaps {
  /** IOMMU_GET_HW_INFO.out_capabilities (IOMMU_HW_CAP_*); 0 where the backend cannot ask. */
  readonly hwCaps: bigint;
  /** Address width in bits the IOMMU can translate. */
  readonly awBits: number;
  /** IOMMU_GET_HW_INFO.out_data_type, where known. */
  readonly hwInfoType?: number;
}

export abstract class HostIommuDevice {
  #caps: HostIommuDeviceCaps | undefined;

  constructor(readonly name: string) {}

  /** The capabilities; throws if the device was not realized. */
  get caps(): HostIommuDeviceCaps {
    if (!this.#caps) throw new Error(`HostIommuDevice ${this.name} is not realized`);
    return this.#caps;
  }

  get realized(): boolean {
    return this.#caps !== undefined;
  }

  /** Read the capabilities from the host. Throws VfioError when the host cannot tell. */
  async realize(): Promise<void> {
    this.#caps = await this.probe();
  }

  protected abstract probe(): Promise<HostIommuDeviceCaps>;
}
