// The host IOMMU behind a VFIO device (QEMU's HostIOMMUDevice): capabilities a guest IOMMU model
// and migration consult. Each backend realizes it its own way during attach (not for mdevs).

import { InvariantError } from '../errors/vmm-error-base.js';
import type { VfioDevice } from './vfio-device.js';

/** Capabilities a backend probes from the host when it realizes the device. */
export interface HostIommuDeviceCaps {
  /** IOMMU_GET_HW_INFO.out_capabilities (IOMMU_HW_CAP_*); 0 where the backend cannot ask. */
  readonly hwCaps: bigint;
  /** IOMMU_GET_HW_INFO.out_data_type, where known. */
  readonly hwInfoType?: number;
}

export abstract class HostIommuDevice {
  #caps: HostIommuDeviceCaps | undefined;

  constructor(
    readonly name: string,
    /** The device whose IOMMU this is. */
    protected readonly device: VfioDevice,
  ) {}

  /** The probed capabilities; throws if the device was not realized. */
  get caps(): HostIommuDeviceCaps {
    if (!this.#caps) throw new InvariantError(`HostIommuDevice ${this.name} is not realized`);
    return this.#caps;
  }

  /** `caps.hwCaps`, for brevity. */
  get hwCaps(): bigint {
    return this.caps.hwCaps;
  }

  /**
   * Address width in bits the IOMMU translates, from the highest IOVA the device's container
   * can map (QEMU's vfio_device_get_aw_bits); 64 before the device is attached.
   */
  get awBits(): number {
    const ranges = this.device.container?.iovaRanges ?? [];
    const max = ranges.reduce((m, r) => (r.last > m ? r.last : m), 0n);
    return max === 0n ? 64 : max.toString(2).length;
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
