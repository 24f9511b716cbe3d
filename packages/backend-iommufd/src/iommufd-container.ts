// An IOAS as a VFIO container (QEMU's VFIOIOMMUFDContainer, hw/vfio/iommufd.c): DMA maps go to
// the IOAS; the HWPTs that auto domains allocate for its devices are the container's own (it
// keeps which device is in which), and IOMMU dirty tracking runs on those allocated with it.

import {
  DirtyBitmap, VfioContainerBase, VfioError, pagesIn,
  type VfioContainerContext, type VfioContainerInfo, type VfioDevice,
} from '@vmmkit/core';
import { IOMMU_HW_CAP_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR } from '@vmmkit/core/uapi';
import type { IommufdObject } from './iommufd-object.js';

const U64_MAX = 0xffff_ffff_ffff_ffffn;

/** A HWPT the container allocated (QEMU's VFIOIOASHwpt): its flags and the devices in it. */
export interface IoasHwpt {
  readonly id: number;
  /** IOMMU_HWPT_ALLOC_* flags it was allocated with. */
  readonly flags: number;
  readonly devices: readonly VfioDevice[];
}

/** How the kernel attaches a device to a page table (the backend's VFIO_DEVICE_ATTACH_IOMMUFD_PT). */
export type AttachPt = (ptId: number) => void;

export class IommufdContainer extends VfioContainerBase {
  readonly #hwpts: { id: number; flags: number; devices: VfioDevice[] }[] = [];
  /** The HWPT each device is in; devices on the IOAS itself (mdevs) have none. */
  readonly #hwptOf = new Map<VfioDevice, IoasHwpt>();

  constructor(
    context: VfioContainerContext,
    /** The iommufd object the IOAS lives in. */
    readonly iommufd: IommufdObject,
    readonly ioasId: number,
  ) {
    super(context);
  }

  /** The HWPTs of the IOAS, in allocation order. */
  get hwpts(): readonly IoasHwpt[] {
    return this.#hwpts;
  }

  /** The HWPT `device` is attached to, if any. */
  hwptOf(device: VfioDevice): IoasHwpt | undefined {
    return this.#hwptOf.get(device);
  }

  /**
   * Attach a device through auto domains (iommufd_cdev_autodomains_get): a compatible HWPT of the
   * container (EINVAL from the kernel means incompatible: try the next), else a new one that asks
   * for dirty tracking when the device's IOMMU offers it. Migration is not set up yet, so this
   * asks whenever it can; migration may still prefer the device's own DMA logging.
   * @returns whether the device's HWPT tracks dirty pages.
   */
  autodomainsGet(device: VfioDevice, devid: number, attachPt: AttachPt): boolean {
    for (const hwpt of this.#hwpts) {
      try {
        attachPt(hwpt.id);
      } catch (e) {
        if (e instanceof VfioError && e.errno === 'EINVAL') continue;
        throw e;
      }
      return this.#join(device, hwpt);
    }
    const caps = device.hostIommuDevice?.hwCaps ?? 0n;
    const flags = caps & BigInt(IOMMU_HW_CAP_DIRTY_TRACKING) ? IOMMU_HWPT_ALLOC_DIRTY_TRACKING : 0;
    const id = this.iommufd.allocHwpt(devid, this.ioasId, flags, device.name);
    try {
      attachPt(id);
    } catch (e) {
      this.iommufd.freeId(id);
      throw e;
    }
    const hwpt = { id, flags, devices: [] };
    this.#hwpts.push(hwpt);
    this.events.emit('vfio:hwpt-allocated', { container: this.id, hwptId: id, dirtyTracking: flags !== 0, device: device.name });
    return this.#join(device, hwpt);
  }

  /** The device left its HWPT in the kernel; the last device out frees it (iommufd_cdev_autodomains_put). */
  autodomainsPut(device: VfioDevice): void {
    const hwpt = this.#hwpts.find((h) => h.devices.includes(device));
    this.#hwptOf.delete(device);
    if (!hwpt) return;
    hwpt.devices.splice(hwpt.devices.indexOf(device), 1);
    if (hwpt.devices.length > 0) return;
    this.#hwpts.splice(this.#hwpts.indexOf(hwpt), 1);
    this.pageTableReleased(hwpt.id);
    this.iommufd.freeId(hwpt.id);
    this.events.emit('vfio:hwpt-freed', { container: this.id, hwptId: hwpt.id });
  }

  /**
   * Read the IOAS's IOVA ranges (iommufd_cdev_get_info_iova_range). If the kernel cannot say,
   * warn and keep the full 64-bit range and host pages, as QEMU does.
   */
  protected override async doSetup(): Promise<VfioContainerInfo> {
    try {
      const { ranges, alignment } = await this.iommufd.iovaRanges(this.ioasId);
      return { iovaRanges: ranges, pgsizes: alignment };
    } catch (e) {
      const message = `${(e as Error).message}; falling back to the full 64-bit IOVA range and ${this.space.memory.pageSize}-byte pages`;
      this.events.emit('vfio:warning', { container: this.id, message });
      return {};
    }
  }

  protected async doDmaMap(iova: bigint, size: bigint, vaddr: bigint, readonly: boolean): Promise<void> {
    this.iommufd.mapDma(this.ioasId, iova, size, vaddr, readonly);
  }

  protected async doDmaUnmap(iova: bigint, size: bigint, all: boolean): Promise<void> {
    // 0 .. U64_MAX is the uAPI's "unmap everything".
    if (all) this.iommufd.unmapDma(this.ioasId, 0n, U64_MAX);
    else this.iommufd.unmapDma(this.ioasId, iova, size);
  }

  /** Free the IOAS (its HWPTs went with their last devices). */
  protected override doRelease(): void {
    this.iommufd.freeId(this.ioasId);
  }

  /** The HWPTs allocated with dirty tracking. */
  protected override doDirtyTrackingTables(): readonly number[] {
    return this.#hwpts.filter((h) => h.flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING).map((h) => h.id);
  }

  protected override doSetDirtyTracking(hwptId: number, start: boolean): void {
    this.iommufd.setDirtyTracking(hwptId, start);
  }

  protected override async doQueryDirtyBitmap(hwptId: number, bitmap: DirtyBitmap, iova: bigint, size: bigint, noClear: boolean): Promise<void> {
    await this.#readDirty(hwptId, bitmap, iova, size, noClear ? IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR : 0);
  }

  /** Read every table's dirty bits without clearing them (the unmap drops them anyway), then unmap. */
  protected override async doDmaUnmapHarvest(iova: bigint, size: bigint, bitmap: DirtyBitmap, tables: readonly number[]): Promise<void> {
    // Every HWPT of the IOAS maps the same IOVAs: their reports OR into one bitmap.
    for (const hwptId of tables) await this.#readDirty(hwptId, bitmap, iova, size, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR);
    this.iommufd.unmapDma(this.ioasId, iova, size);
  }

  async #readDirty(hwptId: number, bitmap: DirtyBitmap, iova: bigint, size: bigint, flags: number): Promise<void> {
    const pageSize = this.space.memory.pageSize;
    const bytes = bitmap.incomingFor(pagesIn(size, pageSize));
    await this.iommufd.getDirtyBitmap(hwptId, iova, size, BigInt(pageSize), bytes, flags);
  }

  #join(device: VfioDevice, hwpt: { id: number; flags: number; devices: VfioDevice[] }): boolean {
    hwpt.devices.push(device);
    this.#hwptOf.set(device, hwpt);
    return (hwpt.flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) !== 0;
  }
}
