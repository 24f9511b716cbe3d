// What an IOAS maps: iopt_pages (a user VA range, pinned once a domain needs it) and iopt_area
// (an IOVA range showing a slice of those pages) of drivers/iommu/iommufd/{pages.c,io_pagetable.h}.

import { fail } from '../kernel/sim-errno.js';
import { sliceSpans, type UserMemory, type UserSpan } from '../memory/user-memory.js';
import { hex, type IovaRange } from './iova-range.js';

/** A user VA range mapped into IOASes (struct iopt_pages); areas of several IOASes may share it. */
export class IoptPages {
  /** The memory behind the range once pinned: pinning resolves it, so unmapping the VA later keeps it. */
  spans: readonly UserSpan[] | undefined;
  /** Whether domains may map it with huge IOPTEs (the IOAS's large-page setting when first pinned). */
  largeOk = true;

  constructor(
    readonly uva: bigint,
    readonly length: bigint,
    /** Pinned for write (IOMMU_WRITE at creation): areas made from it may be writeable. */
    readonly writable: boolean,
  ) {}

  get pinned(): boolean {
    return this.spans !== undefined;
  }

  /** pin_user_pages of the whole range: EFAULT if any byte is unmapped or lacks the access. */
  pin(memory: UserMemory, largeOk: boolean): void {
    if (this.spans) return;
    if (this.length > 1n << 52n) fail('EFAULT', `cannot pin ${hex(this.length)} bytes`);
    this.spans = memory.resolve(this.uva, Number(this.length), this.writable ? 'write' : 'read');
    this.largeOk = largeOk;
  }

  /** The memory behind [byte, byte + length) of the range: pinned pages, else the user's mapping now. */
  memoryAt(memory: UserMemory, byte: bigint, length: number, write: boolean): UserSpan[] {
    if (!this.spans) return memory.resolve(this.uva + byte, length, write ? 'write' : 'read');
    return sliceSpans(this.spans, Number(byte), length);
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
