// Device DMA through an IOAS's mappings: what a domain's IOPTEs (or an access's pinned pages)
// translate an IOVA range to, or why the IOMMU faults it.

import type { DmaTranslation } from '../iommu/dma-target.js';
import { SimErrno } from '../kernel/sim-errno.js';
import type { UserSpan } from '../memory/user-memory.js';
import type { IoPagetable } from './io-pagetable.js';
import { hex } from './iova-range.js';

/** Translate [iova, iova + length) through the areas of `iopt`, checking IOMMU_READ/IOMMU_WRITE. */
export function translateThrough(iopt: IoPagetable, iova: bigint, length: number, write: boolean): DmaTranslation {
  const last = iova + BigInt(length) - 1n;
  const walk = iopt.contiguous(iova, last);
  const spans: UserSpan[] = [];
  for (const [area, from, to] of walk.pieces) {
    if (write ? !area.prot.write : !area.prot.read) {
      return { fault: `IOVA ${hex(from)} is mapped without ${write ? 'write' : 'read'} permission` };
    }
    try {
      spans.push(...area.pages.memoryAt(iopt.memory, area.byteOf(from), Number(to - from + 1n), write));
    } catch (e) {
      if (e instanceof SimErrno) return { fault: `the memory behind IOVA ${hex(from)} is gone (${e.message})` };
      throw e;
    }
  }
  if (!walk.done) {
    const at = walk.pieces.length ? walk.pieces[walk.pieces.length - 1]![2] + 1n : iova;
    return { fault: `no mapping at IOVA ${hex(at)}` };
  }
  return { spans };
}
