// What an IOAS maps: iopt_pages (a user VA range, pinned once a domain needs it) and iopt_area
// (an IOVA range showing a slice of those pages) of drivers/iommu/iommufd/{pages.c,io_pagetable.h}.

import { fail } from '../kernel/sim-errno.js';
import { RangeMap } from '../kernel/range-map.js';
import { sliceSpans, type UserMemory, type UserSpan } from '../memory/user-memory.js';
import { hex, holesOf, type IovaRange } from './iova-range.js';

/** Pinned pages of a range: the memory behind [start, last] of the range's bytes. */
type Pinned = readonly UserSpan[];

/**
 * A user VA range mapped into IOASes (struct iopt_pages); areas of several IOASes may share it.
 * Pages are pinned per area as domains need them (iopt_area_fill_domain), never the whole range
 * at once: a range may run past the end of the user's mapping as long as no area there is pinned.
 */
export class IoptPages {
  /** Pinned byte ranges of the pages: pinning resolves the memory, so unmapping the VA later keeps it. */
  readonly #pins = new RangeMap<Pinned>();
  /** Whether domains may map it with huge IOPTEs (the IOAS's large-page setting when first pinned). */
  largeOk = true;

  constructor(
    readonly uva: bigint,
    readonly length: bigint,
    /** Pinned for write (IOMMU_WRITE at creation): areas made from it may be writeable. */
    readonly writable: boolean,
  ) {}

  /**
   * pin_user_pages of bytes [byte, byte + length) of the range, the parts not pinned yet: EFAULT
   * (pinning nothing) if any byte is unmapped or lacks the access. Returns an undo for what it pinned.
   */
  pin(memory: UserMemory, byte: bigint, length: bigint, largeOk: boolean): () => void {
    if (length > 1n << 52n) fail('EFAULT', `cannot pin ${hex(length)} bytes`);
    if (!length) return () => {};
    const last = byte + length - 1n;
    const holes = holesOf(this.#pins, byte, last);
    const access = this.writable ? 'write' : 'read';
    const resolved = holes.map((h) => memory.resolve(this.uva + h.start, Number(h.last - h.start + 1n), access));
    if (!this.#pins.size) this.largeOk = largeOk;
    const added = holes.map((h, i) => this.#pins.insert(h.start, h.last, resolved[i]!));
    return () => {
      for (const r of added) this.#pins.delete(r);
    };
  }

  /** The memory behind [byte, byte + length) of the range: pinned pages, else the user's mapping now. */
  memoryAt(memory: UserMemory, byte: bigint, length: number, write: boolean): UserSpan[] {
    const last = byte + BigInt(length) - 1n;
    const out: UserSpan[] = [];
    const resolve = (from: bigint, to: bigint): void => {
      out.push(...memory.resolve(this.uva + from, Number(to - from + 1n), write ? 'write' : 'read'));
    };
    let at = byte;
    for (const p of this.#pins.overlapping(byte, last)) {
      if (p.start > at) resolve(at, p.start - 1n);
      const from = p.start > at ? p.start : at;
      const to = p.last < last ? p.last : last;
      out.push(...sliceSpans(p.value, Number(from - p.start), Number(to - from + 1n)));
      at = to + 1n;
    }
    if (at <= last) resolve(at, last);
    return out;
  }
}

/** IOMMU_READ / IOMMU_WRITE of an area. */
export interface AreaProt {
  readonly read: boolean;
  readonly write: boolean;
}

/** An IOVA range mapped to a slice of pages (struct iopt_area). */
export class Area implements IovaRange {
  constructor(
    readonly start: bigint,
    readonly last: bigint,
    readonly pages: IoptPages,
    /** Offset of `start` into the pages. */
    readonly startByte: bigint,
    readonly prot: AreaProt,
  ) {}

  get length(): bigint {
    return this.last - this.start + 1n;
  }

  /** The user VA behind an IOVA of the area. */
  uvaOf(iova: bigint): bigint {
    return this.pages.uva + this.startByte + (iova - this.start);
  }

  /** iopt_area_start_byte: offset into the pages of an IOVA of the area. */
  byteOf(iova: bigint): bigint {
    return this.startByte + (iova - this.start);
  }

  /** A new area over [start, last] of this one (iopt_area_split's halves, IOAS_COPY's slices). */
  slice(start: bigint, last: bigint, prot = this.prot): Area {
    return new Area(start, last, this.pages, this.byteOf(start), prot);
  }
}
