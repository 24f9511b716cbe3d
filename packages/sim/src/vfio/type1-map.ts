// VFIO_IOMMU_MAP_DMA and VFIO_IOMMU_UNMAP_DMA of a type1 container (vfio_dma_do_map,
// vfio_iommu_type1_unmap_dma and vfio_dma_do_unmap in drivers/vfio/vfio_iommu_type1.c).

import {
  VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_VADDR, VFIO_DMA_MAP_FLAG_WRITE, VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, VFIO_DMA_UNMAP_FLAG_VADDR, vfio_bitmap, vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dma_unmap,
} from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import type { UserArg } from '../kernel/user-arg.js';
import { hex, U64_MAX } from '../iommufd/iova-range.js';
import { checkBitmapArgs, updateUserBitmap, type Type1Bitmap } from './type1-dirty.js';
import { Type1Dma } from './type1-dma.js';
import type { Type1Iommu } from './type1-iommu.js';

const MAP = vfio_iommu_type1_dma_map;
const UNMAP = vfio_iommu_type1_dma_unmap;

/** VFIO_IOMMU_MAP_DMA: pin and map, or (FLAG_VADDR) give an invalidated mapping a new user address. */
export function mapDma(iommu: Type1Iommu, user: UserArg): number {
  const map = MAP.decode(user.read(0, MAP.size));
  if (map.argsz < MAP.size || map.flags & ~(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE | VFIO_DMA_MAP_FLAG_VADDR)) {
    fail('EINVAL', 'argsz too small or unknown flags');
  }
  const { iova, size, vaddr } = map;
  if (iommu.kernel.linux.type1Overflow) {
    if (!size) fail('EINVAL', 'size 0');
    if (iova + size - 1n > U64_MAX || vaddr + size - 1n > U64_MAX) fail('EOVERFLOW', 'range past the top of the space');
  }
  const [read, write] = [(map.flags & VFIO_DMA_MAP_FLAG_READ) !== 0, (map.flags & VFIO_DMA_MAP_FLAG_WRITE) !== 0];
  const setVaddr = (map.flags & VFIO_DMA_MAP_FLAG_VADDR) !== 0;
  if ((read || write) === setVaddr) fail('EINVAL', 'exactly one of READ/WRITE and VADDR');
  const mask = iommu.pgsize - 1n;
  if (!size || (size | iova | vaddr) & mask) fail('EINVAL', `size, iova and vaddr must be multiples of ${iommu.pgsize}`);
  if (iova + size - 1n > U64_MAX || vaddr + size - 1n > U64_MAX) fail('EINVAL', 'range wraps');
  const found = iommu.dmas.overlapping(iova, iova + size - 1n)[0]?.value;
  if (setVaddr) {
    if (!found) fail('ENOENT', `nothing mapped at ${hex(iova)}`);
    if (!found.vaddrInvalid || found.iova !== iova || found.size !== size) fail('EINVAL', 'not an invalidated mapping of this range');
    found.vaddr = vaddr;
    found.vaddrInvalid = false;
    return 0;
  }
  if (found) fail('EEXIST', `[${hex(iova)}, +${hex(size)}] overlaps the mapping at ${hex(found.iova)}`);
  if (!iommu.dmaAvail) fail('ENOSPC', 'dma_entry_limit mappings in use');
  if (!iommu.iovaValid(iova, iova + size - 1n)) fail('EINVAL', `[${hex(iova)}, +${hex(size)}] is outside the valid IOVA ranges`);
  const dma = new Type1Dma(iova, size, vaddr, read, write);
  if (iommu.domains.length) dma.pin(iommu.memory);
  // vfio_dma_bitmap_alloc: a bitmap of more than INT_MAX pages is refused while tracking.
  if (iommu.dirtyTracking && size / iommu.pgsize > 0x7fffffffn) fail('EINVAL', 'mapping too large for a dirty bitmap');
  iommu.dmas.insert(iova, dma.last, dma);
  iommu.dmaAvail--;
  return 0;
}

/** The argument checks of vfio_iommu_type1_unmap_dma, with the bitmap of GET_DIRTY_BITMAP. */
function readUnmap(user: UserArg): { unmap: ReturnType<typeof UNMAP.decode>; bitmap: Type1Bitmap | undefined; head: Uint8Array } {
  const head = user.read(0, UNMAP.size);
  const unmap = UNMAP.decode(head);
  const mask = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_VADDR | VFIO_DMA_UNMAP_FLAG_ALL;
  if (unmap.argsz < UNMAP.size || unmap.flags & ~mask) fail('EINVAL', 'argsz too small or unknown flags');
  const dirty = (unmap.flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) !== 0;
  if (dirty && unmap.flags & (VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR)) fail('EINVAL', 'GET_DIRTY_BITMAP with ALL or VADDR');
  if (!dirty) return { unmap, bitmap: undefined, head };
  if (unmap.argsz < UNMAP.size + vfio_bitmap.size) fail('EINVAL', 'argsz leaves no room for struct vfio_bitmap');
  const bitmap = vfio_bitmap.decode(user.read(UNMAP.size, vfio_bitmap.size));
  checkBitmapArgs(unmap.size, bitmap);
  return { unmap, bitmap, head };
}

/** The range checks of vfio_dma_do_unmap (v2 may not bisect a mapping). Returns the range's last IOVA. */
function checkUnmapRange(iommu: Type1Iommu, iova: bigint, size: bigint, all: boolean, bitmap: Type1Bitmap | undefined): bigint {
  const mask = iommu.pgsize - 1n;
  if (iova & mask) fail('EINVAL', `iova not a multiple of ${iommu.pgsize}`);
  if (all) {
    if (iova || size) fail('EINVAL', 'UNMAP_FLAG_ALL needs iova and size 0');
    return U64_MAX;
  }
  if (!size || size & mask) fail('EINVAL', `bad size ${hex(size)}`);
  if (iova + size - 1n > U64_MAX) fail(iommu.kernel.linux.type1Overflow ? 'EOVERFLOW' : 'EINVAL', 'range past the top of the space');
  if (bitmap && (!iommu.dirtyTracking || bitmap.pgsize !== iommu.pgsize)) fail('EINVAL', 'dirty tracking is off or pgsize is not the smallest page');
  const last = iova + size - 1n;
  if (iommu.v2) {
    const head = iommu.dmas.find(iova)?.value;
    if (head && head.iova !== iova) fail('EINVAL', `type1v2 cannot bisect the mapping at ${hex(head.iova)}`);
    const tail = iommu.dmas.find(last)?.value;
    if (tail && tail.last !== last) fail('EINVAL', `type1v2 cannot bisect the mapping at ${hex(tail.iova)}`);
  }
  return last;
}

/**
 * VFIO_IOMMU_UNMAP_DMA: v2 unmaps whole mappings inside the range; v1 unmaps every mapping that
 * starts inside it, whole. FLAG_VADDR only invalidates user addresses; GET_DIRTY_BITMAP reports
 * each mapping's dirty pages before it goes. The size unmapped comes back on success.
 */
export function unmapDma(iommu: Type1Iommu, user: UserArg): number {
  const { unmap, bitmap, head } = readUnmap(user);
  // vfio_dma_do_unmap: an mdev cannot safely pin while vaddrs are being updated.
  if (unmap.flags & VFIO_DMA_UNMAP_FLAG_VADDR && iommu.emulatedGroups.size) fail('EBUSY', 'VADDR updates with an mdev in the container');
  const all = (unmap.flags & VFIO_DMA_UNMAP_FLAG_ALL) !== 0;
  const last = checkUnmapRange(iommu, unmap.iova, unmap.size, all, bitmap);
  let victims = iommu.dmas.overlapping(unmap.iova, last).map((r) => r.value);
  // v1 stops at a mapping that starts before the range: success, nothing unmapped.
  if (!iommu.v2 && victims[0] && victims[0].iova < unmap.iova) victims = [];
  let unmapped = 0n;
  if (unmap.flags & VFIO_DMA_UNMAP_FLAG_VADDR) {
    if (victims.some((dma) => dma.vaddrInvalid)) fail('EINVAL', 'a mapping already has an invalid vaddr');
    for (const dma of victims) {
      dma.vaddrInvalid = true;
      unmapped += dma.size;
    }
  } else {
    for (const dma of victims) {
      if (bitmap) updateUserBitmap(iommu, bitmap, dma, unmap.iova);
      unmapped += dma.size;
      iommu.removeDma(dma);
    }
  }
  UNMAP.set(head, 'size', unmapped);
  user.write(0, head);
  return 0;
}
