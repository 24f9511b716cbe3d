// VFIO_IOMMU_GET_INFO on iommufd's compat container (iommufd_vfio_iommu_get_info in
// drivers/iommu/iommufd/vfio_compat.c): page sizes of the compat IOAS's domains and two
// capabilities, DMA_AVAIL (U32_MAX) then IOVA_RANGE, each starting 8-byte aligned (since 6.6).

import {
  VFIO_IOMMU_INFO_CAPS, VFIO_IOMMU_INFO_PGSIZES, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
  VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, vfio_iommu_type1_info, vfio_iommu_type1_info_cap_iova_range,
  vfio_iommu_type1_info_dma_avail, vfio_iova_range, u32,
} from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import type { UserArg } from '../kernel/user-arg.js';
import type { Ioas } from './ioas.js';
import { PAGE_SIZE, U64_MAX } from './iova-range.js';

const INFO = vfio_iommu_type1_info;
const MINSZ = INFO.members.iova_pgsizes.offset + INFO.members.iova_pgsizes.size;

/** A capability writer: writes what fits in `avail` bytes at `at` and returns the capability's size. */
type FillCap = (ioas: Ioas, user: UserArg, at: number, avail: number) => number;

/** iommufd_fill_cap_dma_avail: iommufd's limit is the cgroup's, reported as U32_MAX. */
const fillDmaAvail: FillCap = (_ioas, user, at, avail) => {
  const cap = vfio_iommu_type1_info_dma_avail.encode({ header: { id: VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, version: 1 }, avail: 0xffffffff });
  const size = 12; // sizeof(struct vfio_iommu_type1_info_dma_avail): the C struct has no tail padding
  if (avail >= size) user.write(at, cap.subarray(0, size));
  return size;
};

/** iommufd_fill_cap_iova: each usable range that fits, then the header if the whole cap fits. */
const fillIovaRange: FillCap = (ioas, user, at, avail) => {
  const ranges = ioas.iopt.usableRanges();
  const head = vfio_iommu_type1_info_cap_iova_range.size;
  const entry = vfio_iova_range.size;
  ranges.forEach((r, i) => {
    if (avail >= head + entry * (i + 1)) user.write(at + head + entry * i, vfio_iova_range.encode({ start: r.start, end: r.last }));
  });
  const size = head + entry * ranges.length;
  if (avail >= size) {
    user.write(at, vfio_iommu_type1_info_cap_iova_range.encode({
      header: { id: VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, version: 1 }, nr_iovas: ranges.length,
    }).subarray(0, head));
  }
  return size;
};

/** iommufd_get_pagesizes: the page sizes every domain supports, sub-page sizes folded into PAGE_SIZE. */
function pageSizes(ioas: Ioas): bigint {
  let bitmap = U64_MAX;
  for (const d of ioas.iopt.domains) bitmap &= d.pageSizes;
  if (bitmap & (PAGE_SIZE - 1n)) bitmap = (bitmap & ~(PAGE_SIZE - 1n)) | PAGE_SIZE;
  return bitmap > ioas.iopt.iovaAlignment ? bitmap : ioas.iopt.iovaAlignment;
}

/**
 * EINVAL below the 16-byte minimum; argsz comes back as the size needed for every capability,
 * cap_offset only when they all fit.
 */
export function compatGetInfo(getIoas: () => Ioas, user: UserArg): number {
  const info = INFO.decode(new Uint8Array([...user.read(0, MINSZ), ...new Uint8Array(INFO.size - MINSZ)]));
  if (info.argsz < MINSZ) fail('EINVAL', `argsz ${info.argsz} is below ${MINSZ}`);
  const copy = Math.min(info.argsz, INFO.size);
  const ioas = getIoas();
  let total = INFO.size;
  let lastCap: number | undefined;
  for (const fill of [fillDmaAvail, fillIovaRange]) {
    const size = fill(ioas, user, total, info.argsz > total ? info.argsz - total : 0);
    if (lastCap !== undefined && info.argsz >= total) {
      const next = new Uint8Array(4);
      u32.write(new DataView(next.buffer), 0, total);
      user.write(lastCap + 4, next);
    }
    lastCap = total;
    // "vfio: align capability structures" (6.6): the next capability starts 8-byte aligned.
    total += Math.ceil(size / 8) * 8;
  }
  const out = INFO.encode({
    argsz: total, flags: VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS, iova_pgsizes: pageSizes(ioas),
    cap_offset: info.argsz >= total ? INFO.size : 0,
  });
  user.write(0, out.subarray(0, copy));
  return 0;
}
