// The IOVA space of an IOAS (struct io_pagetable, drivers/iommu/iommufd/io_pagetable.c): areas,
// reserved and allowed ranges, the IOVA alignment its domains impose, and map/unmap/copy/cut.
// Domains (HWPTs) and accesses join and leave it through iopt-domains.ts.

import { fail } from '../kernel/sim-errno.js';
import { RangeMap } from '../kernel/range-map.js';
import type { UserMemory } from '../memory/user-memory.js';
import { Area, type AreaProt, type IoptPages } from './area.js';
import type { IoDomain } from './io-domain.js';
import { allocIova, checkIova } from './iova-alloc.js';
import { hex, holesOf, intersects, PAGE_SIZE, U64_MAX, type IovaRange } from './iova-range.js';

/** A reserved IOVA range and who reserved it (a domain's aperture, a device's regions, a test). */
export interface Reservation extends IovaRange {
  readonly owner: unknown;
}

/** A slice of pages to map (struct iopt_pages_list). */
export interface PagesSlice {
  readonly pages: IoptPages;
  readonly startByte: bigint;
  readonly length: bigint;
}

/** The outcome of an unmap: bytes unmapped, and whether it stopped at an area it could not split. */
export interface UnmapResult {
  readonly unmapped: bigint;
  readonly straddled: boolean;
}

export class IoPagetable {
  readonly areas = new RangeMap<Area>();
  readonly reserved: Reservation[] = [];
  /** IOMMU_IOAS_ALLOW_IOVAS ranges, sorted and disjoint; empty means everything. */
  allowed: readonly IovaRange[] = [];
  iovaAlignment = 1n;
  disableLargePages = false;
  /** The domains filled from this IOVA space, in attach order. */
  readonly domains = new Set<IoDomain>();
  /** Accesses attached (each needs PAGE_SIZE alignment). */
  readonly accesses = new Set<object>();

  constructor(readonly memory: UserMemory) {}

  reservedIntersects(start: bigint, last: bigint): boolean {
    return this.reserved.some((r) => intersects(r, { start, last }));
  }

  /** iopt_reserve_iova: EADDRINUSE if anything is mapped or allowed there. */
  reserve(start: bigint, last: bigint, owner: unknown): void {
    const range = { start, last };
    if (this.areas.overlapping(start, last).length || this.allowed.some((a) => intersects(a, range))) {
      fail('EADDRINUSE', `cannot reserve [${hex(start)}, ${hex(last)}]: it is mapped or allowed`);
    }
    this.reserved.push({ start, last, owner });
  }

  /** Drop every reservation of `owner`. */
  unreserve(owner: unknown): void {
    for (let i = this.reserved.length - 1; i >= 0; i--) if (this.reserved[i]!.owner === owner) this.reserved.splice(i, 1);
  }

  /** The usable IOVA ranges: holes of the reserved ranges over the whole space (IOMMU_IOAS_IOVA_RANGES). */
  usableRanges(): IovaRange[] {
    return holesOf(this.reserved, 0n, U64_MAX);
  }

  /**
   * iopt_map_pages: place the slices back to back at `fixedIova` (or an allocated IOVA), pinning
   * them when domains need the memory. Validates everything before changing anything.
   */
  map(slices: readonly PagesSlice[], length: bigint, fixedIova: bigint | undefined, prot: AreaProt): bigint {
    if (!length || length & (this.iovaAlignment - 1n)) fail('EINVAL', `length ${hex(length)} is not a non-zero multiple of ${this.iovaAlignment}`);
    const first = slices[0]!;
    const iova = fixedIova ?? allocIova(this, first.pages.uva + first.startByte, length);
    if (fixedIova !== undefined) checkIova(this, iova, length);
    const areas: Area[] = [];
    let at = iova;
    for (const s of slices) {
      if (prot.write && !s.pages.writable) fail('EPERM', 'the pages were not pinned for writing');
      const pageOffset = (s.pages.uva + s.startByte) % PAGE_SIZE;
      if (pageOffset & (this.iovaAlignment - 1n)) fail('EINVAL', `user address offset ${hex(pageOffset)} breaks the IOVA alignment ${this.iovaAlignment}`);
      if (at + s.length - 1n > U64_MAX) fail('EOVERFLOW', 'IOVA range wraps');
      areas.push(new Area(at, at + s.length - 1n, s.pages, s.startByte, prot));
      at += s.length;
    }
    if (this.domains.size) this.#pin(areas);
    // Pinned, then mapped: a domain refusing the mapping fails it after the pinning did not.
    if (!prot.read && !prot.write && [...this.domains].some((d) => d.unit.refusesNoAccess)) fail('EINVAL', 'a domain cannot map pages with no access');
    for (const a of areas) this.areas.insert(a.start, a.last, a);
    return iova;
  }

  /** iopt_get_pages: the slices behind [iova, iova + length), which must be mapped without a gap (ENOENT). */
  getPages(iova: bigint, length: bigint): PagesSlice[] {
    if (!length) fail('EINVAL', 'zero length');
    const last = iova + length - 1n;
    if (last > U64_MAX) fail('EOVERFLOW', 'IOVA range wraps');
    const walk = this.contiguous(iova, last);
    if (!walk.done) fail('ENOENT', `[${hex(iova)}, ${hex(last)}] is not fully mapped`);
    return walk.pieces.map(([area, from, to]) => ({ pages: area.pages, startByte: area.byteOf(from), length: to - from + 1n }));
  }

  /**
   * The areas mapping [start, last] one after another from `start` (iopt_for_each_contig_area),
   * each with the part of the range it covers; `done` when they reach `last` without a gap.
   */
  contiguous(start: bigint, last: bigint): { pieces: [Area, bigint, bigint][]; done: boolean } {
    const pieces: [Area, bigint, bigint][] = [];
    let at = start;
    for (const { value: area } of this.areas.overlapping(start, last)) {
      if (area.start > at) break;
      const to = area.last < last ? area.last : last;
      pieces.push([area, at, to]);
      if (to === last) return { pieces, done: true };
      at = to + 1n;
    }
    return { pieces, done: false };
  }

  /**
   * iopt_unmap_iova_range: remove the areas inside [start, last] in IOVA order, stopping at the
   * first area that sticks out of the range (areas are never split here; earlier ones stay unmapped).
   */
  unmap(start: bigint, last: bigint): UnmapResult {
    let unmapped = 0n;
    for (const { value: area } of this.areas.overlapping(start, last)) {
      if (area.start < start || area.last > last) return { unmapped, straddled: true };
      this.#removeArea(area);
      unmapped += area.length;
    }
    return { unmapped, straddled: false };
  }

  /**
   * iopt_cut_iova (VFIO type1 compat): split the areas holding each IOVA so it ends an area.
   * EINVAL where the split would break the alignment or a large-page IOPTE.
   */
  cut(iovas: readonly bigint[]): void {
    for (const iova of iovas) {
      const range = this.areas.find(iova);
      if (!range || iova === range.start || iova === range.last) continue;
      const area = range.value;
      if ((iova + 1n) & (this.iovaAlignment - 1n) || area.byteOf(iova + 1n) & (this.iovaAlignment - 1n)) {
        fail('EINVAL', `cannot split the area at ${hex(iova)}: misaligned`);
      }
      if (this.domains.size && !this.disableLargePages) fail('EINVAL', 'cannot split an area a domain may map with large pages');
      this.areas.delete(range);
      this.areas.insert(area.start, iova, area.slice(area.start, iova));
      this.areas.insert(iova + 1n, area.last, area.slice(iova + 1n, area.last));
    }
  }

  /** Pin every area for a domain about to be filled (iopt_fill_domain): EFAULT changes nothing. */
  pinAll(): void {
    this.#pin([...this.areas].map((r) => r.value));
  }

  /** Pin the pages behind each area (only those: iopt_area_fill_domain); on failure unpin what this call pinned. */
  #pin(areas: readonly Area[]): void {
    const undo: (() => void)[] = [];
    try {
      // Huge IOPTEs need physically contiguous memory: only huge-page backed memory is.
      const largeOk = !this.disableLargePages && this.memory.hugePages;
      for (const a of areas) undo.push(a.pages.pin(this.memory, a.startByte, a.length, largeOk));
    } catch (e) {
      for (const u of undo) u();
      throw e;
    }
  }

  #removeArea(area: Area): void {
    this.areas.delete(this.areas.find(area.start)!);
    for (const d of this.domains) d.forget(area.start, area.last);
  }
}
