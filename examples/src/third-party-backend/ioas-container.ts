// A container of the example backend: one IOAS on the backend's own /dev/iommu fd. The kernel
// picks the IO page tables (its auto domains), so there is no IOMMU dirty tracking here: the
// container's dirty tracking falls back to device DMA logging or "every mapped page is dirty".
// Like every backend's container, it implements only the kernel hooks; the base does the rest.

import { HostError, VfioContainerBase, vfioCall, type VfioContainerContext } from '@vmmkit/core';
import {
  IOMMU_DESTROY, IOMMU_IOAS_MAP, IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, IOMMU_IOAS_UNMAP,
  iommu_destroy, iommu_ioas_map, iommu_ioas_unmap,
} from '@vmmkit/core/uapi';

const U64_MAX = 0xffff_ffff_ffff_ffffn;

export class IoasContainer extends VfioContainerBase {
  constructor(
    context: VfioContainerContext,
    /** The backend's /dev/iommu fd and this container's IOAS in it. */
    readonly iommufd: number,
    readonly ioasId: number,
    /** Called once the IOAS is freed (the backend closes its fd after the last one). */
    private readonly released: () => void,
  ) {
    super(context);
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
      vfioCall(`unmap IOVA 0x${iova.toString(16)} in ${this.id}`, undefined, () => {
        throw e;
      });
    }
  }

  /** Free the IOAS; the backend hears of it whether or not the kernel agreed. */
  protected doRelease(): void {
    try {
      vfioCall(`free IOAS ${this.ioasId}`, undefined, () => this.host.ioctl(this.iommufd, IOMMU_DESTROY, iommu_destroy.encode({ id: this.ioasId })));
    } finally {
      this.released();
    }
  }
}
