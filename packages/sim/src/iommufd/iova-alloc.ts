// Choosing and checking the IOVA of a new IOAS mapping: iopt_alloc_iova and iopt_check_iova of
// drivers/iommu/iommufd/io_pagetable.c.

import { fail } from '../kernel/sim-errno.js';
import type { IoPagetable } from './io-pagetable.js';
import { alignUp, holesOf, HPAGE_SIZE, lowestBit, PAGE_SIZE, roundupPow2, U64_MAX, type IovaRange } from './iova-range.js';

/**
 * iopt_check_iova for a fixed IOVA: EINVAL if misaligned or on a reserved range, EOVERFLOW if it
 * wraps, EEXIST if something is mapped there. Allowed ranges do not restrict fixed mappings.
 */
export function checkIova(iopt: IoPagetable, iova: bigint, length: bigint): void {
  if (iova & (iopt.iovaAlignment - 1n)) fail('EINVAL', `IOVA 0x${iova.toString(16)} is not aligned to ${iopt.iovaAlignment}`);
  const last = iova + length - 1n;
  if (last > U64_MAX) fail('EOVERFLOW', 'IOVA range wraps');
  if (iopt.reservedIntersects(iova, last)) fail('EINVAL', `[0x${iova.toString(16)}, 0x${last.toString(16)}] hits a reserved IOVA range`);
  if (iopt.areas.overlapping(iova, last).length) fail('EEXIST', `[0x${iova.toString(16)}, 0x${last.toString(16)}] is already mapped`);
}

/**
 * iopt_alloc_iova: the lowest hole of the allowed ranges (the whole space when none were set,
 * but never IOVA 0) that is free of reserved ranges and areas and fits `length` at an alignment
 * that keeps the user address's alignment up to a huge page, so huge pages stay possible. ENOSPC if none.
 */
export function allocIova(iopt: IoPagetable, uva: bigint, length: bigint): bigint {
  const pageOffset = uva % PAGE_SIZE;
  if (length === 0n || length >= U64_MAX / 2n) fail('EOVERFLOW', `cannot place ${length} bytes`);
  let alignment = roundupPow2(length);
  if (uva !== 0n && lowestBit(uva) < alignment) alignment = lowestBit(uva);
  // Capped at the huge page size: larger alignments gain nothing and fragment the IOVA space
  // (and ALIGN() could overflow). Every 6.12 release has the cap (upstream 8f6887349b2f, 6.12-rc1).
  if (alignment >= HPAGE_SIZE) alignment = HPAGE_SIZE;
  if (alignment < iopt.iovaAlignment) fail('EINVAL', `the user address allows alignment ${alignment}, below the IOAS's ${iopt.iovaAlignment}`);
  const window = iopt.allowed.length ? mergeAdjacent(iopt.allowed) : [{ start: PAGE_SIZE, last: U64_MAX - PAGE_SIZE }];
  for (const allowed of window) {
    const span = clip(allowed, PAGE_SIZE, U64_MAX - PAGE_SIZE);
    if (!span || !fits(span.start, span.last, length, alignment, pageOffset)) continue;
    for (const hole of holesOf([...iopt.reserved, ...iopt.areas], span.start, span.last)) {
      if (fits(hole.start, hole.last, length, alignment, pageOffset)) return alignUp(hole.start, alignment) | pageOffset;
    }
  }
  return fail('ENOSPC', `no free IOVA range of ${length} bytes`);
}

/** __alloc_iova_check_*: does [start, last] hold `length` bytes from an aligned start? */
function fits(start: bigint, last: bigint, length: bigint, alignment: bigint, pageOffset: bigint): boolean {
  if (last - start < length - 1n) return false;
  const aligned = alignUp(start, alignment) | pageOffset;
  return aligned <= last && last - aligned >= length - 1n;
}

/** The "used" spans of the allowed tree: touching ranges walk as one span. */
function mergeAdjacent(ranges: readonly IovaRange[]): IovaRange[] {
  const out: IovaRange[] = [];
  for (const r of [...ranges].sort((a, b) => (a.start < b.start ? -1 : 1))) {
    const prev = out[out.length - 1];
    if (prev && r.start <= prev.last + 1n) out[out.length - 1] = { start: prev.start, last: r.last > prev.last ? r.last : prev.last };
    else out.push(r);
  }
  return out;
}

function clip(r: IovaRange, from: bigint, to: bigint): IovaRange | undefined {
  const start = r.start > from ? r.start : from;
  const last = r.last < to ? r.last : to;
  return start <= last ? { start, last } : undefined;
}
