// A paging IO page table (struct iommu_domain) as its IOPTEs behave: which IO page size maps an
// IOVA of an area, and the IOPTE dirty bits a device write sets while tracking is on
// (drivers/iommu/iommu.c dirty ops; intel/iommu.c and selftest.c read_and_clear_dirty).

import { SparseBitmap } from '../iommu/sparse-bitmap.js';
import type { Area } from './area.js';
import type { IommuUnit } from './iommu-unit.js';
import { lowestBit, type IovaRange } from './iova-range.js';

export class IoDomain {
  /** IOPTE dirty bits, one per smallest IO page; a huge IOPTE is dirty when any of its bits is. */
  readonly dirty = new SparseBitmap();
  /** Dirty tracking enabled (set_dirty_tracking). */
  tracking = false;
  readonly minPage: bigint;
  readonly #shift: bigint;

  constructor(
    readonly unit: IommuUnit,
    /** pgsize_bitmap. */
    readonly pageSizes: bigint,
    readonly aperture: IovaRange,
    /** Allocated with dirty_ops (IOMMU_HWPT_ALLOC_DIRTY_TRACKING). */
    readonly dirtyOps: boolean,
  ) {
    this.minPage = lowestBit(pageSizes);
    this.#shift = BigInt(this.minPage.toString(2).length - 1);
  }

  /** Index of the IO page holding `iova`. */
  index(iova: bigint): number {
    return Number(iova >> this.#shift);
  }

  /** A device wrote [iova, iova + length): the hardware sets the IOPTE dirty bits when tracking. */
  recordWrite(iova: bigint, length: number): void {
    if (!this.tracking || length <= 0) return;
    const first = this.index(iova);
    this.dirty.setRange(first, this.index(iova + BigInt(length) - 1n) - first + 1);
  }

  /** The IOPTEs of [start, last] are gone (unmap, or a domain leaving): their dirty bits too. */
  forget(start: bigint, last: bigint): void {
    const first = this.index(start);
    this.dirty.clearRange(first, this.index(last) - first + 1);
  }

  /**
   * The IOPTE holding `iova` of `area`: the largest page size whose aligned block lies inside the
   * area, when the area may use large pages and its IOVA and user address agree modulo that size
   * (the pinned memory is physically contiguous, so the user address stands for the physical one).
   */
  ioptAt(area: Area, iova: bigint): IovaRange {
    let best: IovaRange = { start: iova & ~(this.minPage - 1n), last: (iova & ~(this.minPage - 1n)) + this.minPage - 1n };
    if (!area.pages.largeOk) return best;
    const delta = area.start - area.uvaOf(area.start);
    for (let sizes = this.pageSizes & ~this.minPage; sizes; sizes &= sizes - 1n) {
      const size = lowestBit(sizes);
      const start = iova & ~(size - 1n);
      if (delta % size !== 0n || start < area.start || start + size - 1n > area.last) continue;
      best = { start, last: start + size - 1n };
    }
    return best;
  }

  /**
   * read_and_clear_dirty over [start, last] of one area: calls `record` for each dirty stretch
   * (whole IOPTEs, clipped to the range; a huge IOPTE reports all of itself) and then clears
   * every IOPTE the range touches, unless `noClear`.
   */
  readAndClear(area: Area, start: bigint, last: bigint, noClear: boolean, record: (start: bigint, last: bigint) => void): void {
    const lo = this.ioptAt(area, start).start;
    const hi = this.ioptAt(area, last).last;
    const first = this.index(lo);
    let done = lo - 1n; // last IOVA reported, so runs inside one huge IOPTE report once
    this.dirty.forEachRun(first, this.index(hi) - first + 1, (s, n) => {
      const runStart = BigInt(s) << this.#shift;
      const runLast = (BigInt(s + n) << this.#shift) - 1n;
      if (runLast <= done) return;
      const head = this.ioptAt(area, runStart > done ? runStart : done + 1n).start;
      const tail = this.ioptAt(area, runLast).last;
      record(head > start ? head : start, tail < last ? tail : last);
      done = tail;
    });
    if (!noClear) this.forget(lo, hi);
  }
}
