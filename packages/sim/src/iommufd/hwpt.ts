// A paging HWPT (struct iommufd_hwpt_paging, drivers/iommu/iommufd/hw_pagetable.c): a domain
// filled from one IOAS. Attached devices DMA through it; its IOPTEs record dirty pages.

import type { DmaTarget, DmaTranslation } from '../iommu/dma-target.js';
import { translateThrough } from './dma-translate.js';
import type { Idev } from './idev.js';
import type { IoDomain } from './io-domain.js';
import type { Ioas } from './ioas.js';
import type { IommufdFile } from './iommufd-file.js';
import { removeDomain } from './iopt-domains.js';
import { IommufdObject } from './object-table.js';

export class Hwpt extends IommufdObject implements DmaTarget {
  readonly type = 'hwpt_paging' as const;
  /** Devices attached through their group (each holds a reference: IOMMU_DESTROY says EBUSY). */
  readonly devices = new Set<Idev>();
  /** Allocated by the kernel for an IOAS attach, destroyed with its last device. */
  autoDomain = false;

  constructor(
    readonly ctx: IommufdFile,
    readonly ioas: Ioas,
    readonly domain: IoDomain,
    /** IOMMU_HWPT_ALLOC_NEST_PARENT. */
    readonly nestParent: boolean,
  ) {
    super();
  }

  /** Join the IOAS (the domain was added to its IOVA space) and count the object. */
  commit(id: number): void {
    this.id = id;
    this.ioas.hwpts.add(this);
    this.ctx.kernel.census.add('hwpt');
  }

  /** Undo a committed HWPT whose id was never finalized (iommufd_object_abort_and_destroy). */
  abort(): void {
    this.destroyed();
    this.ctx.objects.abort(this.id);
  }

  get busy(): boolean {
    return this.devices.size > 0;
  }

  get description(): string {
    return `iommufd hwpt ${this.id}`;
  }

  translate(iova: bigint, length: number, write: boolean): DmaTranslation {
    return translateThrough(this.ioas.iopt, iova, length, write);
  }

  recordWrite(iova: bigint, length: number): void {
    this.domain.recordWrite(iova, length);
  }

  /** Turn dirty tracking on or off, keeping the census of tracking page tables. */
  setTracking(enable: boolean): void {
    if (enable === this.domain.tracking) return;
    this.domain.tracking = enable;
    if (enable) this.ctx.kernel.census.add('iommu_dirty_tracking');
    else this.ctx.kernel.census.remove('iommu_dirty_tracking');
  }

  /** iommufd_hwpt_paging_destroy: leave the IOAS; the domain and its dirty bits go. */
  protected destroyed(): void {
    this.setTracking(false);
    this.ioas.hwpts.delete(this);
    removeDomain(this.ioas.iopt, this.domain);
    this.ctx.kernel.census.remove('hwpt');
  }
}
