// A type1 DMA mapping (struct vfio_dma, drivers/vfio/vfio_iommu_type1.c) and the two ways a
// device reaches a container's mappings: through the IOMMU domains (pinned pages, IOPTE
// permissions) or, for an mdev, through vfio_dma_rw's copies to the mapping's user address.

import type { DmaTarget, DmaTranslation } from '../iommu/dma-target.js';
import { SimErrno } from '../kernel/sim-errno.js';
import { sliceSpans, type UserMemory, type UserSpan } from '../memory/user-memory.js';
import { hex } from '../iommufd/iova-range.js';
import type { Type1Iommu } from './type1-iommu.js';

/** One VFIO_IOMMU_MAP_DMA mapping. */
export class Type1Dma {
  /** Pinned memory, once a domain maps it (iommu_mapped). */
  pinned: readonly UserSpan[] | undefined;
  /** VFIO_DMA_UNMAP_FLAG_VADDR invalidated the user address until MAP_DMA with FLAG_VADDR. */
  vaddrInvalid = false;

  constructor(
    readonly iova: bigint,
    readonly size: bigint,
    public vaddr: bigint,
    readonly read: boolean,
    readonly write: boolean,
  ) {}

  get last(): bigint {
    return this.iova + this.size - 1n;
  }

  /** vfio_pin_pages_remote over the whole mapping (FOLL_WRITE for writeable ones): EFAULT if unmapped. */
  pin(memory: UserMemory): void {
    if (!this.pinned) this.pinned = memory.resolve(this.vaddr, Number(this.size), this.write ? 'write' : 'read');
  }

  /** The memory behind [offset, offset + length) of the mapping. */
  memoryAt(memory: UserMemory, offset: bigint, length: number, viaIommu: boolean): UserSpan[] {
    if (!viaIommu || !this.pinned) return memory.resolve(this.vaddr + offset, length, this.write ? 'write' : 'read');
    return sliceSpans(this.pinned, Number(offset), length);
  }
}

/**
 * The DMA path of a group in a type1 container. A group behind an IOMMU reaches the pinned pages
 * through IOPTEs and leaves no trace type1 could see. An emulated (mdev) group reaches memory
 * through vfio_dma_rw, which needs IOMMU_READ even to write, and marks what it writes dirty.
 */
export class Type1Target implements DmaTarget {
  constructor(
    private readonly iommu: Type1Iommu,
    private readonly emulated: boolean,
  ) {}

  get description(): string {
    return this.emulated ? 'type1 container (vfio_dma_rw)' : 'type1 container';
  }

  translate(iova: bigint, length: number, write: boolean): DmaTranslation {
    const last = iova + BigInt(length) - 1n;
    const spans: UserSpan[] = [];
    let at = iova;
    for (const { value: dma } of this.iommu.dmas.overlapping(iova, last)) {
      if (dma.iova > at) break;
      const denied = write ? !dma.write || (this.emulated && !dma.read) : !dma.read;
      if (denied) return { fault: `IOVA ${hex(at)} is mapped without ${write ? 'write' : 'read'} permission` };
      if (this.emulated && dma.vaddrInvalid) return { fault: `IOVA ${hex(at)} has no valid user address` };
      const to = dma.last < last ? dma.last : last;
      try {
        spans.push(...dma.memoryAt(this.iommu.memory, at - dma.iova, Number(to - at + 1n), !this.emulated));
      } catch (e) {
        if (e instanceof SimErrno) return { fault: `the memory behind IOVA ${hex(at)} is gone (${e.message})` };
        throw e;
      }
      if (to === last) return { spans };
      at = to + 1n;
    }
    return { fault: `no mapping at IOVA ${hex(at)}` };
  }

  recordWrite(iova: bigint, length: number): void {
    if (this.emulated) this.iommu.markPinnedDirty(iova, length);
  }
}
