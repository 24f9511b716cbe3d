// A container of the example backend: one IOAS on the backend's own /dev/iommu fd. The kernel
// picks the IO page tables (its auto domains), so there is no IOMMU dirty tracking here — the
// VfioContainerBase falls back to device DMA logging or "every mapped page is dirty".

import {
  IOMMU_IOAS_MAP, IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, IOMMU_IOAS_UNMAP,
  HostError, VfioContainerBase, vfioCall, iommu_ioas_map, iommu_ioas_unmap,
  type HostKernel, type VfioAddressSpace, type VfioIommuClass, type VmmEventBus,
} from '@vmmkit/core';

const U64_MAX = 0xffff_ffff_ffff_ffffn;

export class IoasContainer extends VfioContainerBase {
  constructor(
    id: string,
    iommuClass: VfioIommuClass,
    space: VfioAddressSpace,
    host: HostKernel,
    events: VmmEventBus,
    /** The backend's /dev/iommu fd and this container's IOAS in it. */
    readonly iommufd: number,
    readonly ioasId: number,
  ) {
    super(id, iommuClass, space, host, events);
  }

  protected async doDmaMap(iova: bigint, size: bigint, vaddr: bigint, readonly: boolean): Promise<void> {
    const flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | (readonly ? 0 : IOMMU_IOAS_MAP_WRITEABLE);
    vfioCall(`map IOVA 0x${iova.toString(16)} in ${this.id}`, undefined, () =>
      this.host.ioctl(this.iommufd, IOMMU_IOAS_MAP, iommu_ioas_map.encode({ flags, ioas_id: this.ioasId, user_va: vaddr, length: size, iova })),
    );
  }

  protected async doDmaUnmap(iova: bigint, size: bigint, all: boolean): Promise<void> {
    const arg = all ? { ioas_id: this.ioasId, iova: 0n, length: U64_MAX } : { ioas_id: this.ioasId, iova, length: size };
    try {
      this.host.ioctl(this.iommufd, IOMMU_IOAS_UNMAP, iommu_ioas_unmap.encode(arg));
    } catch (e) {
      // ENOENT: nothing was mapped there (or a mapping would be cut in two). Unmapping nothing is not an error.
      if (HostError.is(e, 'ENOENT')) return;
      throw vfioCall(`unmap IOVA 0x${iova.toString(16)} in ${this.id}`, undefined, () => {
        throw e;
      });
    }
  }
}
