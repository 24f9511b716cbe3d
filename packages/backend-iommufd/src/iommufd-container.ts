// An IOAS as a VFIO container (QEMU's VFIOIOMMUFDContainer, hw/vfio/iommufd.c): DMA maps go
// to the IOAS, and dirty tracking to the HWPTs that auto domains allocated for its devices.

import {
  HOST_PAGE_SIZE, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, VfioContainerBase, VfioError,
  type DirtyBitmap, type HostKernel, type VfioAddressSpace, type VfioDevice, type VfioIommuClass, type VmmEventBus,
} from '@vmmkit/core';
import type { IommufdBackend } from './iommufd-backend.js';

const PAGE = BigInt(HOST_PAGE_SIZE);
const U64_MAX = 0xffff_ffff_ffff_ffffn;

/** A HWPT the container allocated (QEMU's VFIOIOASHwpt): its flags and the devices in it. */
export interface IoasHwpt {
  readonly id: number;
  /** IOMMU_HWPT_ALLOC_* flags it was allocated with. */
  readonly flags: number;
  readonly devices: VfioDevice[];
}

export class IommufdContainer extends VfioContainerBase {
  /** The HWPTs of the IOAS, in allocation order. */
  readonly hwpts: IoasHwpt[] = [];

  constructor(
    id: string,
    iommuClass: VfioIommuClass,
    space: VfioAddressSpace,
    host: HostKernel,
    events: VmmEventBus,
    readonly backend: IommufdBackend,
    readonly ioasId: number,
  ) {
    super(id, iommuClass, space, host, events);
  }

  /**
   * Read the IOAS's IOVA ranges (iommufd_cdev_get_info_iova_range). If the kernel cannot say,
   * warn and keep the full 64-bit range and host pages, as QEMU does.
   */
  async setup(): Promise<void> {
    try {
      const { ranges, alignment } = await this.backend.iovaRanges(this.ioasId);
      if (ranges.length) this.iovaRanges = ranges;
      this.pgsizes = alignment > 0n ? alignment : PAGE;
    } catch (e) {
      this.pgsizes = PAGE;
      const message = `${(e as Error).message}; falling back to the full 64-bit IOVA range and ${HOST_PAGE_SIZE}-byte pages`;
      this.events.emit('vfio:warning', { container: this.id, message });
    }
  }

  /**
   * IOMMU dirty tracking covers the container only when every device's IO page table tracks:
   * a device in a HWPT without dirty tracking, or an mdev on the IOAS itself, would write pages
   * nobody reports. (QEMU ORs the HWPTs' support; vmmkit refuses to miss a device's writes.)
   */
  refreshDirtySupport(): void {
    this.dirtyPagesSupported = this.devices.length > 0 && this.devices.every((d) => d.iommuDirtyTracking);
  }

  protected async doDmaMap(iova: bigint, size: bigint, vaddr: bigint, readonly: boolean): Promise<void> {
    this.backend.mapDma(this.ioasId, iova, size, vaddr, readonly);
  }

  protected async doDmaUnmap(iova: bigint, size: bigint, all: boolean): Promise<void> {
    // 0 .. U64_MAX is the uAPI's "unmap everything".
    if (all) this.backend.unmapDma(this.ioasId, 0n, U64_MAX);
    else this.backend.unmapDma(this.ioasId, iova, size);
  }

  /** Read the range's dirty bits without clearing them (the unmap drops them anyway), then unmap. */
  protected override async doDmaUnmapHarvest(iova: bigint, size: bigint, bitmap: DirtyBitmap): Promise<void> {
    await this.#readDirty(bitmap, iova, size, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR);
    this.backend.unmapDma(this.ioasId, iova, size);
  }

  /** Start or stop tracking on every dirty-tracking HWPT; a failure puts the ones done back. */
  protected override async doSetDirtyPageTracking(start: boolean): Promise<void> {
    const done: IoasHwpt[] = [];
    try {
      for (const hwpt of this.#dirtyHwpts()) {
        this.backend.setDirtyTracking(hwpt.id, start);
        done.push(hwpt);
      }
    } catch (e) {
      for (const hwpt of done) {
        try {
          this.backend.setDirtyTracking(hwpt.id, !start);
        } catch {
          // Reported below: the first failure is the one that matters.
        }
      }
      throw new VfioError(`${start ? 'start' : 'stop'} IOMMU dirty tracking of ${this.id}`, undefined, { cause: e });
    }
  }

  protected override async doQueryDirtyBitmap(bitmap: DirtyBitmap, iova: bigint, size: bigint, noClear: boolean): Promise<void> {
    await this.#readDirty(bitmap, iova, size, noClear ? IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR : 0);
  }

  async #readDirty(bitmap: DirtyBitmap, iova: bigint, size: bigint, flags: number): Promise<void> {
    const bytes = bitmap.incoming.subarray(0, Math.ceil(Number((size + PAGE - 1n) / PAGE) / 64) * 8);
    // Every HWPT of the IOAS maps the same IOVAs: their reports OR into one bitmap.
    for (const hwpt of this.#dirtyHwpts()) await this.backend.getDirtyBitmap(hwpt.id, iova, size, PAGE, bytes, flags);
  }

  #dirtyHwpts(): IoasHwpt[] {
    return this.hwpts.filter((h) => h.flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
  }
}
