// Type1 dirty page tracking (VFIO_IOMMU_DIRTY_PAGES and the bitmap of UNMAP_DMA's
// GET_DIRTY_BITMAP, drivers/vfio/vfio_iommu_type1.c). Type1 cannot see what an IOMMU-backed
// device writes, so while any such group is attached every mapped page is reported dirty on every
// read; only mdevs' vfio_dma_rw writes are tracked page by page.

import {
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, VFIO_IOMMU_DIRTY_PAGES_FLAG_START, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
  vfio_iommu_type1_dirty_bitmap, vfio_iommu_type1_dirty_bitmap_get,
} from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import type { UserArg } from '../kernel/user-arg.js';
import { hex, lowestBit, U64_MAX } from '../iommufd/iova-range.js';
import { UserBitmap } from '../iommufd/user-bitmap.js';
import type { Type1Dma } from './type1-dma.js';
import type { Type1Iommu } from './type1-iommu.js';

/** struct vfio_bitmap as the caller passed it. */
export interface Type1Bitmap {
  readonly pgsize: bigint;
  readonly size: bigint;
  readonly data: bigint;
}

/** DIRTY_BITMAP_SIZE_MAX: a bitmap of INT_MAX pages, 256 MiB (what the MIGRATION capability reports). */
export const DIRTY_BITMAP_SIZE_MAX = 1n << 28n;

/** DIRTY_BITMAP_BYTES: whole __u64 words. */
const bitmapBytes = (bits: bigint): bigint => ((bits + 63n) / 64n) * 8n;

/** access_ok and verify_bitmap_size for a bitmap covering `size` bytes of IOVA (EINVAL). */
export function checkBitmapArgs(size: bigint, bitmap: Type1Bitmap): void {
  if (bitmap.data + bitmap.size > U64_MAX + 1n) fail('EINVAL', 'the bitmap is not in the user address space');
  if (!bitmap.pgsize) fail('EINVAL', 'pgsize is 0');
  const pages = size / lowestBit(bitmap.pgsize);
  if (!pages || !bitmap.size || bitmap.size > DIRTY_BITMAP_SIZE_MAX || bitmap.size < bitmapBytes(pages)) {
    fail('EINVAL', `bitmap of ${bitmap.size} bytes does not fit ${pages} pages (max ${DIRTY_BITMAP_SIZE_MAX} bytes)`);
  }
}

/**
 * update_user_bitmap: write one mapping's dirty bits at its offset from `base`. The words it
 * covers are rewritten, except that a mapping starting inside a word is ORed into that word whole
 * (the kernel's bitmap_or over the first long keeps every bit the caller had there, after the
 * mapping too: seen on Linux 7.2 in the kernel tier). Then the mapping's tracked bits are cleared
 * (nothing stays pinned in SimHost).
 */
export function updateUserBitmap(iommu: Type1Iommu, bitmap: Type1Bitmap, dma: Type1Dma, base: bigint): void {
  const pgsize = iommu.pgsize;
  const nbits = Number(dma.size / pgsize);
  const offset = Number((dma.iova - base) / pgsize);
  const firstWord = Math.floor(offset / 64);
  const words = Math.floor((offset + nbits - 1) / 64) - firstWord + 1;
  const user = UserBitmap.pin(iommu.memory, bitmap.data + BigInt(firstWord * 8), words * 8);
  const shift = offset - firstWord * 64;
  if (shift === 0) user.clear(0, words * 64);
  else if (words > 1) user.clear(64, (words - 1) * 64);
  const firstPage = Number(dma.iova / pgsize);
  if (iommu.nonPinnedGroups && dma.pinned) user.set(shift, nbits);
  else iommu.pinnedDirty.forEachRun(firstPage, nbits, (s, n) => user.set(shift + (s - firstPage), n));
  iommu.pinnedDirty.clearRange(firstPage, nbits);
}

/** VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP: the range may not bisect a mapping (EINVAL). */
function getBitmap(iommu: Type1Iommu, user: UserArg, argsz: number): number {
  const HEAD = vfio_iommu_type1_dirty_bitmap.size;
  const GET = vfio_iommu_type1_dirty_bitmap_get;
  if (argsz - HEAD < GET.size) fail('EINVAL', 'argsz leaves no room for struct vfio_iommu_type1_dirty_bitmap_get');
  const range = GET.decode(user.read(HEAD, GET.size));
  if (iommu.kernel.linux.type1Overflow) {
    if (!range.size) fail('EINVAL', 'size 0');
    if (range.iova + range.size - 1n > U64_MAX) fail('EOVERFLOW', 'range past the top of the space');
  } else if (range.iova + range.size > U64_MAX) fail('EINVAL', 'range wraps');
  checkBitmapArgs(range.size, range.bitmap);
  const pgsize = iommu.pgsize;
  if (range.bitmap.pgsize !== pgsize) fail('EINVAL', `pgsize must be the smallest IOMMU page, ${pgsize}`);
  if (range.iova & (pgsize - 1n) || !range.size || range.size & (pgsize - 1n)) fail('EINVAL', 'range not page aligned');
  if (!iommu.dirtyTracking) fail('EINVAL', 'dirty tracking is not started');
  const last = range.iova + range.size - 1n;
  const head = iommu.dmas.find(range.iova)?.value;
  if (head && head.iova !== range.iova) fail('EINVAL', `the range bisects the mapping at ${hex(head.iova)}`);
  const tail = iommu.dmas.find(last)?.value;
  if (tail && tail.last !== last) fail('EINVAL', `the range bisects the mapping at ${hex(tail.iova)}`);
  for (const { value: dma } of iommu.dmas.overlapping(range.iova, last)) updateUserBitmap(iommu, range.bitmap, dma, range.iova);
  return 0;
}

/** VFIO_IOMMU_DIRTY_PAGES: v2 only (EACCES), exactly one of START, STOP and GET_BITMAP. */
export function dirtyPages(iommu: Type1Iommu, user: UserArg): number {
  if (!iommu.v2) fail('EACCES', 'dirty page tracking needs VFIO_TYPE1v2_IOMMU');
  const { argsz, flags } = vfio_iommu_type1_dirty_bitmap.decode(user.read(0, vfio_iommu_type1_dirty_bitmap.size));
  const mask = VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP | VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
  if (argsz < vfio_iommu_type1_dirty_bitmap.size || flags & ~mask) fail('EINVAL', 'argsz too small or unknown flags');
  if (flags === VFIO_IOMMU_DIRTY_PAGES_FLAG_START) {
    if (iommu.dirtyTracking) return 0;
    for (const { value } of iommu.dmas) if (value.size / iommu.pgsize > 0x7fffffffn) fail('EINVAL', 'a mapping is too large for a dirty bitmap');
    iommu.pinnedDirty.clear();
    iommu.setDirtyTracking(true);
    return 0;
  }
  if (flags === VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP) {
    iommu.setDirtyTracking(false);
    iommu.pinnedDirty.clear();
    return 0;
  }
  if (flags === VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP) return getBitmap(iommu, user, argsz);
  return fail('EINVAL', 'exactly one of START, STOP and GET_BITMAP');
}
