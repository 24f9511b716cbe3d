// A legacy VFIO type1 container (QEMU's VFIOContainer, hw/vfio/container.c): a /dev/vfio/vfio (or
// iommufd compat) fd the container owns from creation, the groups set to it (its own list: it
// sets and unsets them), DMA mappings with VFIO_IOMMU_MAP/UNMAP_DMA and dirty tracking with
// VFIO_IOMMU_DIRTY_PAGES.

import { DirtyBitmap, FirstFailure, HostError, VfioContainerBase, VfioError, pagesIn, vfioCall, vfioClose, withKernelBuffer, type VfioContainerContext, type VfioContainerInfo } from '@vmmkit/core';
import {
  VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE, VFIO_DMA_UNMAP_FLAG_ALL, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER, VFIO_IOMMU_DIRTY_PAGES, VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA,
  VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU, vfio_bitmap, vfio_iommu_type1_dirty_bitmap, vfio_iommu_type1_dirty_bitmap_get,
  vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap,
} from '@vmmkit/core/uapi';
import { getType1Info } from './type1-info.js';
import type { VfioGroup } from './vfio-group.js';

const HALF = 1n << 63n;
/** type1 tracks dirty pages for the whole container: its one IO page table, as the dirty-tracking hooks name it. */
const CONTAINER_TABLE = 0;

const fdArg = (fd: number): Uint8Array => {
  const arg = new Uint8Array(4);
  new DataView(arg.buffer).setInt32(0, fd, true);
  return arg;
};

export class LegacyType1Container extends VfioContainerBase {
  readonly #groups: VfioGroup[] = [];
  #iommuType = 0;
  #unmapAllFlag = false;

  constructor(
    context: VfioContainerContext,
    /** The container fd (/dev/vfio/vfio, or iommufd's compat container): the container's from now on. */
    readonly fd: number,
  ) {
    super(context);
  }

  /** The groups set to the container. */
  get groups(): readonly VfioGroup[] {
    return this.#groups;
  }

  /** VFIO_TYPE1v2_IOMMU or VFIO_TYPE1_IOMMU, once set. */
  get iommuType(): number {
    return this.#iommuType;
  }

  /**
   * Set `group` to the container (VFIO_GROUP_SET_CONTAINER). The kernel refuses a group whose
   * IOMMU cannot share the container's: the HostError is thrown as it is, so callers can try
   * another container.
   */
  connectGroup(group: VfioGroup): void {
    this.host.ioctl(group.fd, VFIO_GROUP_SET_CONTAINER, fdArg(this.fd));
    this.#groups.push(group);
    group.container = this;
  }

  /** Unset `group` from the container (VFIO_GROUP_UNSET_CONTAINER). It leaves the list even if the kernel refuses. */
  disconnectGroup(group: VfioGroup): void {
    const i = this.#groups.indexOf(group);
    if (i < 0) return;
    this.#groups.splice(i, 1);
    group.container = undefined;
    vfioCall(`disconnect group ${group.id} from ${this.id}`, undefined, () => this.host.ioctl(group.fd, VFIO_GROUP_UNSET_CONTAINER));
  }

  /** Choose the container's IOMMU model (VFIO_SET_IOMMU), once its first group is set. */
  setIommu(type: number, unmapAllFlag: boolean): void {
    vfioCall(`set the IOMMU of ${this.id}`, undefined, () => this.host.ioctl(this.fd, VFIO_SET_IOMMU, type));
    this.#iommuType = type;
    this.#unmapAllFlag = unmapAllFlag;
  }

  /** Read the container's capabilities (QEMU's vfio_legacy_setup). */
  protected override doSetup(): VfioContainerInfo {
    const info = getType1Info(this.host, this.fd);
    const page = BigInt(this.space.memory.pageSize);
    // Dirty pages are reported per page: only usable when that page size is offered. Linux reports
    // the capability for type1 v1 too, then refuses DIRTY_PAGES there (EACCES): v2 only.
    const migration = info.migration && info.migration.pgsizeBitmap & page && this.#iommuType === VFIO_TYPE1v2_IOMMU ? info.migration : undefined;
    return {
      pgsizes: info.pgsizes,
      dmaMaxMappings: info.dmaAvail ?? 65535,
      iovaRanges: info.iovaRanges,
      maxDirtyBitmapSize: migration?.maxDirtyBitmapSize,
      dirtyPgsizes: migration?.pgsizeBitmap,
    };
  }

  /** Unset the groups still set (the last unset destroys the kernel's container), then close the fd. */
  protected override doRelease(): void {
    const failures = new FirstFailure();
    for (const group of [...this.#groups]) failures.run(() => this.disconnectGroup(group));
    failures.run(() => vfioClose(this.host, this.fd, this.id));
    failures.rethrow();
  }

  protected async doDmaMap(iova: bigint, size: bigint, vaddr: bigint, readonly: boolean): Promise<void> {
    const flags = VFIO_DMA_MAP_FLAG_READ | (readonly ? 0 : VFIO_DMA_MAP_FLAG_WRITE);
    vfioCall(`map IOVA 0x${iova.toString(16)} (+0x${size.toString(16)}) in ${this.id}`, undefined, () =>
      this.host.ioctl(this.fd, VFIO_IOMMU_MAP_DMA, vfio_iommu_type1_dma_map.encode({ flags, vaddr, iova, size })),
    );
  }

  protected async doDmaUnmap(iova: bigint, size: bigint, all: boolean): Promise<void> {
    if (all && this.#unmapAllFlag) return this.#unmap(0n, 0n, VFIO_DMA_UNMAP_FLAG_ALL);
    if (all) {
      // The unmap ioctl does not take a full 64-bit span: unmap in halves.
      this.#unmap(0n, HALF, 0);
      return this.#unmap(HALF, HALF, 0);
    }
    this.#unmap(iova, size, 0);
  }

  /** The container tracks as a whole (when the kernel offers type1's migration capability at our page size). */
  protected override doDirtyTrackingTables(): readonly number[] {
    return this.dirtyPgsizes ? [CONTAINER_TABLE] : [];
  }

  protected override doSetDirtyTracking(_table: number, start: boolean): void {
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
  protected override async doQueryDirtyBitmap(_table: number, bitmap: DirtyBitmap, iova: bigint, size: bigint): Promise<void> {
    const bytes = this.#bitmapBytes(bitmap, size);
    const step = `get the dirty bitmap of IOVA 0x${iova.toString(16)} (+0x${size.toString(16)}) in ${this.id}`;
    this.#checkBitmapSize(step, bytes.byteLength);
    await withKernelBuffer(this.host, bytes, (data) => {
      const arg = vfio_iommu_type1_dirty_bitmap.encode({
        flags: VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
        data: vfio_iommu_type1_dirty_bitmap_get.encode({ iova, size, bitmap: { pgsize: this.#page, size: BigInt(bytes.byteLength), data } }),
      });
      vfioCall(step, undefined, () => this.host.ioctl(this.fd, VFIO_IOMMU_DIRTY_PAGES, arg));
    });
  }

  /** Unmap and receive the range's dirty bits in one call (QEMU's vfio_dma_unmap_bitmap). */
  protected override async doDmaUnmapHarvest(iova: bigint, size: bigint, bitmap: DirtyBitmap): Promise<void> {
    const bytes = this.#bitmapBytes(bitmap, size);
    const step = `unmap IOVA 0x${iova.toString(16)} with its dirty bitmap in ${this.id}`;
    this.#checkBitmapSize(step, bytes.byteLength);
    await withKernelBuffer(this.host, bytes, (data) => {
      const arg = vfio_iommu_type1_dma_unmap.encode({
        flags: VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
        iova,
        size,
        data: vfio_bitmap.encode({ pgsize: this.#page, size: BigInt(bytes.byteLength), data }),
      });
      vfioCall(step, undefined, () => this.host.ioctl(this.fd, VFIO_IOMMU_UNMAP_DMA, arg));
    });
  }

  get #page(): bigint {
    return BigInt(this.space.memory.pageSize);
  }

  #bitmapBytes(bitmap: DirtyBitmap, size: bigint): Uint8Array {
    return bitmap.incomingFor(pagesIn(size, this.space.memory.pageSize));
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
      if (HostError.is(e, 'EINVAL') && size && iova + size === 1n << 64n && this.#iommuType === VFIO_TYPE1v2_IOMMU) {
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
