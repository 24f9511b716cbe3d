// A paging IO page table (struct iommu_domain) as its IOPTEs behave: which IO page size maps an
// IOVA of an area, and the IOPTE dirty bits a device write sets while tracking is on
// (drivers/iommu/iommu.c dirty ops; intel/iommu.c and selftest.c read_and_clear_dirty).

import { SparseBitmap } from '../iommu/sparse-bitmap.js';
import type { Area } from './area.js';
import type { IommuUnit } from './iommu-unit.js';
import { lowestBit, PAGE_SIZE, type IovaRange } from './iova-range.js';

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
   * area and whose IOVA and user address agree modulo that size. Only memory the area may map
   * with large pages (huge-page backed, large pages allowed) is contiguous beyond one CPU page, so
   * otherwise no IOPTE is larger than PAGE_SIZE (the pinned pages stand for the physical ones).
   */
  ioptAt(area: Area, iova: bigint): IovaRange {
    let best: IovaRange = { start: iova & ~(this.minPage - 1n), last: (iova & ~(this.minPage - 1n)) + this.minPage - 1n };
    const delta = area.start - area.uvaOf(area.start);
    for (let sizes = this.pageSizes & ~this.minPage; sizes; sizes &= sizes - 1n) {
      const size = lowestBit(sizes);
      if (size > PAGE_SIZE && !area.pages.largeOk) break;
      const start = iova & ~(size - 1n);
      if (delta % size !== 0n || start < area.start || start + size - 1n > area.last) continue;
      best = { start, last: start + size - 1n };
    }
    return best;
  }

  /**
   * read_and_clear_dirty over [start, last] of one area: calls `record` for each dirty stretch and
   * then clears every IOPTE the range touches, unless `noClear`. A classic driver reports whole
   * IOPTEs, clipped to the range; the generic page table reports as its record_dirty does.
   */
  readAndClear(
    area: Area, start: bigint, last: bigint, noClear: boolean, genericPt: boolean, record: (start: bigint, last: bigint) => void,
  ): void {
    const lo = this.ioptAt(area, start).start;
    const hi = this.ioptAt(area, last).last;
    const first = this.index(lo);
    // The dirty IOPTEs, found from the runs of dirty bits (sparse: a sync costs what is dirty).
    const dirty: IovaRange[] = [];
    let done = lo - 1n; // the last IOVA of the last IOPTE found
    this.dirty.forEachRun(first, this.index(hi) - first + 1, (s, n) => {
      const runLast = (BigInt(s + n) << this.#shift) - 1n;
      for (let at = BigInt(s) << this.#shift; at <= runLast; at = done + 1n) {
        if (at <= done) continue;
        const iopte = this.ioptAt(area, at);
        dirty.push(iopte);
        done = iopte.last;
      }
    });
    for (const iopte of dirty) {
      const at = iopte.start > start ? iopte.start : start; // where the walk reaches the IOPTE
      const span = genericPt ? this.#genericPtReport(iopte, at, last) : { start: at, last: iopte.last < last ? iopte.last : last };
      if (span) record(span.start, span.last);
    }
    if (!noClear) this.forget(lo, hi); // every IOPTE the range touches, whole
  }

  /**
   * What the generic page table's walk reports of a dirty IOPTE when it reaches it at `at` with the
   * walk ending at `last` (record_dirty). An IOPTE of one table item reports an item's length from
   * `at`. One made of contiguous items reports up to, but not including, its last item: the walk
   * stops at the index of the last item rather than past it, and never passes the end of the walk.
   */
  #genericPtReport(iopte: IovaRange, at: bigint, last: bigint): IovaRange | undefined {
    const size = iopte.last - iopte.start + 1n;
    let item = this.minPage;
    while (item * 512n <= size) item *= 512n;
    const tail = (l: bigint): bigint => (l < last ? l : last);
    if (item === size) return { start: at, last: tail(at + size - 1n) };
    const index = (at - iopte.start) / item;
    const end = (last - iopte.start) / item + 1n; // exclusive, the walk's end_index
    const lastItem = size / item - 1n;
    const items = (lastItem < end ? lastItem : end) - index;
    return items > 0n ? { start: at, last: at + items * item - 1n } : undefined;
  }
}
