// A legacy VFIO type1 container (QEMU's VFIOContainer, hw/vfio/container.c): DMA mappings with
// VFIO_IOMMU_MAP/UNMAP_DMA and dirty tracking with VFIO_IOMMU_DIRTY_PAGES.

import {
  HOST_PAGE_SIZE, VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE, VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, VFIO_IOMMU_DIRTY_PAGES, VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA,
  VFIO_TYPE1v2_IOMMU, VfioContainerBase, VfioError, HostError, FULL_IOVA_RANGE, withKernelBuffer,
  vfio_bitmap, vfio_iommu_type1_dirty_bitmap, vfio_iommu_type1_dirty_bitmap_get, vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dma_unmap, vfioCall, type DirtyBitmap, type HostKernel, type VfioAddressSpace,
  type VfioIommuClass, type VmmEventBus,
} from '@vmmkit/core';
import { getType1Info } from './type1-info.js';
import type { VfioGroup } from './vfio-group.js';

const PAGE = BigInt(HOST_PAGE_SIZE);
const HALF = 1n << 63n;

export class LegacyType1Container extends VfioContainerBase {
  /** The groups attached to the container. */
  readonly groups: VfioGroup[] = [];

  constructor(
    id: string,
    iommuClass: VfioIommuClass,
    space: VfioAddressSpace,
    host: HostKernel,
    events: VmmEventBus,
    /** The container fd (/dev/vfio/vfio, or iommufd's compat container). */
    readonly fd: number,
    /** VFIO_TYPE1v2_IOMMU or VFIO_TYPE1_IOMMU. */
    readonly iommuType: number,
    /** The kernel takes VFIO_DMA_UNMAP_FLAG_ALL (VFIO_UNMAP_ALL extension). */
    private readonly unmapAllFlag: boolean,
  ) {
    super(id, iommuClass, space, host, events);
  }

  /** Read the container's capabilities (QEMU's vfio_legacy_setup). */
  setup(): void {
    const info = getType1Info(this.host, this.fd);
    this.pgsizes = info.pgsizes ?? PAGE;
    this.dmaMaxMappings = info.dmaAvail ?? 65535;
    this.iovaRanges = info.iovaRanges?.length ? info.iovaRanges : [FULL_IOVA_RANGE];
    // Dirty pages are reported per host page: only usable when that page size is offered.
    if (info.migration && info.migration.pgsizeBitmap & PAGE) {
      this.dirtyPagesSupported = true;
      this.maxDirtyBitmapSize = info.migration.maxDirtyBitmapSize;
      this.dirtyPgsizes = info.migration.pgsizeBitmap;
    }
  }

  protected async doDmaMap(iova: bigint, size: bigint, vaddr: bigint, readonly: boolean): Promise<void> {
    const flags = VFIO_DMA_MAP_FLAG_READ | (readonly ? 0 : VFIO_DMA_MAP_FLAG_WRITE);
    vfioCall(`map IOVA 0x${iova.toString(16)} (+0x${size.toString(16)}) in ${this.id}`, undefined, () =>
      this.host.ioctl(this.fd, VFIO_IOMMU_MAP_DMA, vfio_iommu_type1_dma_map.encode({ flags, vaddr, iova, size })),
    );
  }

  protected async doDmaUnmap(iova: bigint, size: bigint, all: boolean): Promise<void> {
    if (all && this.unmapAllFlag) return this.#unmap(0n, 0n, VFIO_DMA_UNMAP_FLAG_ALL);
    if (all) {
      // The unmap ioctl does not take a full 64-bit span: unmap in halves.
      this.#unmap(0n, HALF, 0);
      return this.#unmap(HALF, HALF, 0);
    }
    this.#unmap(iova, size, 0);
  }

  /** Unmap and receive the range's dirty bits in one call (QEMU's vfio_dma_unmap_bitmap). */
  protected override async doDmaUnmapHarvest(iova: bigint, size: bigint, bitmap: DirtyBitmap): Promise<void> {
    const bytes = bitmap.incoming.subarray(0, Math.ceil(Number(size / PAGE) / 64) * 8);
    this.#checkBitmapSize(`unmap IOVA 0x${iova.toString(16)} with its dirty bitmap`, bytes.byteLength);
    await withKernelBuffer(this.host, bytes, (data) => {
      const arg = vfio_iommu_type1_dma_unmap.encode({
        flags: VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
        iova,
        size,
        data: vfio_bitmap.encode({ pgsize: PAGE, size: BigInt(bytes.byteLength), data }),
      });
      vfioCall(`unmap IOVA 0x${iova.toString(16)} with its dirty bitmap in ${this.id}`, undefined, () =>
        this.host.ioctl(this.fd, VFIO_IOMMU_UNMAP_DMA, arg),
      );
    });
  }

  protected override async doSetDirtyPageTracking(start: boolean): Promise<void> {
    const flags = start ? VFIO_IOMMU_DIRTY_PAGES_FLAG_START : VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP;
    vfioCall(`${start ? 'start' : 'stop'} dirty page tracking in ${this.id}`, undefined, () =>
      this.host.ioctl(this.fd, VFIO_IOMMU_DIRTY_PAGES, vfio_iommu_type1_dirty_bitmap.encode({ flags })),
    );
  }

  /**
   * VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP. type1 always clears what it reports, so `noClear`
   * changes nothing. The range must cover whole mappings, so it cannot be split: a bitmap over
   * the kernel's limit is refused with E2BIG, as for an unmap.
   */
  protected override async doQueryDirtyBitmap(bitmap: DirtyBitmap, iova: bigint, size: bigint): Promise<void> {
    const bytes = bitmap.incoming.subarray(0, Math.ceil(Number(size / PAGE) / 64) * 8);
    const step = `get the dirty bitmap of IOVA 0x${iova.toString(16)} (+0x${size.toString(16)}) in ${this.id}`;
    this.#checkBitmapSize(step, bytes.byteLength);
    await withKernelBuffer(this.host, bytes, (data) => {
      const arg = vfio_iommu_type1_dirty_bitmap.encode({
        flags: VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
        data: vfio_iommu_type1_dirty_bitmap_get.encode({ iova, size, bitmap: { pgsize: PAGE, size: BigInt(bytes.byteLength), data } }),
      });
      vfioCall(step, undefined, () => this.host.ioctl(this.fd, VFIO_IOMMU_DIRTY_PAGES, arg));
    });
  }

  #unmap(iova: bigint, size: bigint, flags: number): void {
    const step = `unmap IOVA 0x${iova.toString(16)} (+0x${size.toString(16)}) in ${this.id}`;
    try {
      this.host.ioctl(this.fd, VFIO_IOMMU_UNMAP_DMA, vfio_iommu_type1_dma_unmap.encode({ flags, iova, size }));
    } catch (e) {
      // type1 never answers ENOENT; iommufd's compat container does for a range with nothing
      // mapped (until Linux fixed it to match type1 in 2025). Unmapping nothing is not an error.
      if (HostError.is(e, 'ENOENT')) return;
      // type1 v2 kernels before 5.0 cannot unmap the last page of the address space (an
      // overflow in their wrap-around check): retry without it, as QEMU does. It is never mapped.
      if (HostError.is(e, 'EINVAL') && size && iova + size === 1n << 64n && this.iommuType === VFIO_TYPE1v2_IOMMU) {
        const smallest = this.pgsizes & -this.pgsizes;
        return this.#unmap(iova, size - smallest, flags);
      }
      throw new VfioError(step, undefined, { cause: e });
    }
  }

  #checkBitmapSize(step: string, bytes: number): void {
    if (this.maxDirtyBitmapSize > 0n && BigInt(bytes) > this.maxDirtyBitmapSize) {
      throw new VfioError(step, undefined, {
        errno: 'E2BIG',
        detail: `a dirty bitmap of ${bytes} bytes exceeds the container's limit of ${this.maxDirtyBitmapSize} bytes (E2BIG)`,
      });
    }
  }
}
