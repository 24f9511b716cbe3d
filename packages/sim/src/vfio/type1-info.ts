// VFIO_CHECK_EXTENSION and VFIO_IOMMU_GET_INFO of the type1 backend, and its ioctl switch
// (vfio_iommu_type1_ioctl, drivers/vfio/vfio_iommu_type1.c).

import {
  VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU, VFIO_IOMMU_DIRTY_PAGES, VFIO_IOMMU_GET_INFO, VFIO_IOMMU_INFO_CAPS,
  VFIO_IOMMU_INFO_PGSIZES, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
  VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, VFIO_IOMMU_UNMAP_DMA, VFIO_TYPE1_IOMMU,
  VFIO_TYPE1_NESTING_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_UNMAP_ALL, VFIO_UPDATE_VADDR, vfio_iommu_type1_info,
  vfio_iommu_type1_info_cap_iova_range, vfio_iommu_type1_info_cap_migration, vfio_iommu_type1_info_dma_avail,
} from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import type { IoctlArg } from '../kernel/sim-file.js';
import { UserArg } from '../kernel/user-arg.js';
import { dirtyPages, DIRTY_BITMAP_SIZE_MAX } from './type1-dirty.js';
import type { SimKernel } from '../kernel/sim-kernel.js';
import type { Type1Iommu } from './type1-iommu.js';
import { mapDma, unmapDma } from './type1-map.js';

const INFO = vfio_iommu_type1_info;

/**
 * vfio_iommu_type1_check_extension, with `iommu` undefined before VFIO_SET_IOMMU. No SimHost
 * domain enforces cache coherency, so DMA_CC_IOMMU is 1 only for a backend without domains.
 */
export function type1CheckExtension(kernel: SimKernel, iommu: Type1Iommu | undefined, ext: bigint): number {
  const is = (v: number): boolean => ext === BigInt(v);
  if (is(VFIO_TYPE1_IOMMU) || is(VFIO_TYPE1v2_IOMMU) || is(VFIO_UNMAP_ALL)) return 1;
  if (is(VFIO_TYPE1_NESTING_IOMMU)) return kernel.linux.type1Nesting ? 1 : 0;
  if (is(VFIO_UPDATE_VADDR)) return iommu && !iommu.emulatedGroups.size ? 1 : 0;
  if (is(VFIO_DMA_CC_IOMMU)) return iommu && !iommu.domains.length ? 1 : 0;
  return 0;
}

/** vfio_info_cap_add: capabilities padded to 8 bytes and chained by `next` offsets. */
function buildCaps(iommu: Type1Iommu): Uint8Array[] {
  const caps: Uint8Array[] = [
    vfio_iommu_type1_info_cap_migration.encode({
      header: { id: VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, version: 1 }, flags: 0,
      pgsize_bitmap: iommu.pgsize, max_dirty_bitmap_size: DIRTY_BITMAP_SIZE_MAX,
    }),
    vfio_iommu_type1_info_dma_avail.encode({ header: { id: VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, version: 1 }, avail: iommu.dmaAvail }),
  ];
  // A container with only mdevs has no IOVA list, and no IOVA_RANGE capability.
  if (iommu.iovaList.length) {
    caps.push(vfio_iommu_type1_info_cap_iova_range.encode({
      header: { id: VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, version: 1 }, nr_iovas: iommu.iovaList.length,
      iova_ranges: iommu.iovaList.map((r) => ({ start: r.start, end: r.last })),
    }));
  }
  return caps.map((c) => {
    const padded = new Uint8Array(Math.ceil(c.byteLength / 8) * 8);
    padded.set(c);
    return padded;
  });
}

/**
 * VFIO_IOMMU_GET_INFO: EINVAL below 16 bytes. Capabilities (MIGRATION, DMA_AVAIL, IOVA_RANGE)
 * follow the struct when argsz leaves room for all of them; otherwise argsz tells the size needed.
 */
function getInfo(iommu: Type1Iommu, user: UserArg): number {
  const minsz = INFO.members.iova_pgsizes.offset + 8;
  const capsz = INFO.members.cap_offset.offset + 4;
  const argsz = new DataView(user.read(0, minsz).buffer).getUint32(0, true);
  if (argsz < minsz) fail('EINVAL', `argsz ${argsz} is below ${minsz}`);
  const caps = buildCaps(iommu);
  const total = caps.reduce((n, c) => n + c.byteLength, 0);
  let capOffset = 0;
  let outArgsz = argsz;
  if (argsz < INFO.size + total) {
    outArgsz = INFO.size + total;
  } else {
    let at = INFO.size;
    caps.forEach((c, i) => {
      if (i + 1 < caps.length) new DataView(c.buffer).setUint32(4, at + c.byteLength, true);
      user.write(at, c);
      at += c.byteLength;
    });
    capOffset = INFO.size;
  }
  const out = INFO.encode({
    argsz: outArgsz, flags: VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS, iova_pgsizes: iommu.pgsizeBitmap, cap_offset: capOffset,
  });
  user.write(0, out.subarray(0, argsz >= capsz ? capsz : minsz));
  return 0;
}

/** vfio_iommu_type1_ioctl: the container ioctls type1 answers once set; others are ENOTTY. */
export function type1Ioctl(iommu: Type1Iommu, request: number, arg: IoctlArg): number {
  if (request === VFIO_CHECK_EXTENSION) return type1CheckExtension(iommu.kernel, iommu, arg instanceof Uint8Array ? -1n : BigInt(arg));
  const user = (): UserArg => UserArg.of(arg, iommu.memory);
  switch (request) {
    case VFIO_IOMMU_GET_INFO:
      return getInfo(iommu, user());
    case VFIO_IOMMU_MAP_DMA:
      return mapDma(iommu, user());
    case VFIO_IOMMU_UNMAP_DMA:
      return unmapDma(iommu, user());
    case VFIO_IOMMU_DIRTY_PAGES:
      return dirtyPages(iommu, user());
    default:
      return fail('ENOTTY', `request 0x${request.toString(16)} is not a type1 ioctl`);
  }
}
