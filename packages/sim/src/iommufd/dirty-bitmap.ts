// IOMMU_HWPT_GET_DIRTY_BITMAP after its flag checks: iopt_read_and_clear_dirty_data and
// iommufd_check_iova_range (drivers/iommu/iommufd/io_pagetable.c) over iova_bitmap.c's windows.

import { fail, SimErrno } from '../kernel/sim-errno.js';
import type { Hwpt } from './hwpt.js';
import { lowestBit, U64_MAX } from './iova-range.js';
import { UserBitmap } from './user-bitmap.js';

/** The query of one GET_DIRTY_BITMAP. */
export interface DirtyQuery {
  readonly iova: bigint;
  readonly length: bigint;
  readonly pageSize: bigint;
  /** User address of the bitmap (__u64 words, bit n for IOVA iova + n * pageSize). */
  readonly data: bigint;
  readonly noClear: boolean;
}

/** iommufd_check_iova_range: EOVERFLOW if the range wraps, EINVAL if misaligned or page_size is 0. */
function checkRange(alignment: bigint, q: DirtyQuery): bigint {
  const last = q.iova + ((q.length - 1n) & U64_MAX);
  if (last > U64_MAX) fail('EOVERFLOW', 'iova + length wraps');
  const end = (last + 1n) & U64_MAX;
  if (q.iova & (alignment - 1n) || end & (alignment - 1n)) fail('EINVAL', `range not aligned to the IOAS's ${alignment}`);
  if (!q.pageSize) fail('EINVAL', 'page_size is 0');
  if (q.iova & (q.pageSize - 1n) || end & (q.pageSize - 1n)) fail('EINVAL', `range not aligned to page_size ${q.pageSize}`);
  return last;
}

/**
 * Read the dirty IOPTEs of [iova, iova + length) into the user's bitmap (OR-ing bits in) and
 * clear them unless NO_CLEAR. Walks the areas contiguously mapped from `iova`. What the walk meets
 * (a hole in the range; on 6.12, a driver refusing to read with tracking off) fails the ioctl on
 * 6.12 with that error and is ignored on 7.x, which succeeds having reported what it reached. A
 * bitmap that is not writable user memory is skipped silently on both (iova_bitmap_set).
 */
export function readDirtyBitmap(hwpt: Hwpt, q: DirtyQuery): void {
  const iopt = hwpt.ioas.iopt;
  const last = checkRange(iopt.iovaAlignment, q);
  const domain = hwpt.domain;
  if (!domain.dirtyOps) fail('EOPNOTSUPP', `hwpt ${hwpt.id} was not allocated for dirty tracking`);
  const series = hwpt.ctx.kernel.linux;
  const genericPt = series.pageTable === 'generic-pt';
  const walkError = (why: string): void => {
    if (series.reportsDirtyWalkErrors) fail('EINVAL', why);
  };
  const shift = BigInt(lowestBit(q.pageSize).toString(2).length - 1);
  const bitOf = (iova: bigint): number => Number((iova - q.iova) >> shift);
  const walk = iopt.contiguous(q.iova, last);
  for (const [area, from, to] of walk.pieces) {
    // The classic drivers' read_and_clear_dirty refuse while tracking is off (-EINVAL).
    if (!genericPt && !domain.tracking) return walkError(`hwpt ${hwpt.id} does not track dirty pages`);
    const firstWord = Math.floor(bitOf(from) / 64);
    const words = Math.floor(bitOf(to) / 64) - firstWord + 1;
    let bitmap: UserBitmap | undefined;
    try {
      bitmap = UserBitmap.pin(iopt.memory, q.data + BigInt(firstWord * 8), words * 8);
    } catch (e) {
      if (!(e instanceof SimErrno)) throw e;
    }
    const base = firstWord * 64;
    domain.readAndClear(area, from, to, q.noClear, genericPt, (s, l) => {
      const clipped = l < last ? l : last; // iova_bitmap_set records inside the bitmap only
      bitmap?.set(bitOf(s) - base, bitOf(clipped) - bitOf(s) + 1);
    });
  }
  if (!walk.done) walkError(`[0x${q.iova.toString(16)}, 0x${last.toString(16)}] is not fully mapped`);
}
