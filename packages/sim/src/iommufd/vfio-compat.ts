// iommufd's VFIO type1 compatibility container (drivers/iommu/iommufd/vfio_compat.c): the
// container ioctls on an /dev/iommu fd, working on the compat IOAS, and the hooks a VFIO group set
// to the iommufd uses (iommufd_vfio_compat_ioas_create, vfio_iommufd_compat_attach_ioas).

import {
  VFIO_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU, VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_DMA_UNMAP_FLAG_ALL, VFIO_GET_API_VERSION, VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA,
  VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_UNMAP_ALL, vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dma_unmap,
} from '@vmmkit/core/uapi';
import type { SimDevice } from '../kernel/sim-device.js';
import { fail } from '../kernel/sim-errno.js';
import type { IoctlArg } from '../kernel/sim-file.js';
import { UserArg } from '../kernel/user-arg.js';
import { IoptPages } from './area.js';
import { compatGetInfo } from './vfio-compat-info.js';
import { Ioas } from './ioas.js';
import type { IommufdFile } from './iommufd-file.js';
import { disableLargePages } from './iopt-domains.js';
import { hex, PAGE_SIZE, U64_MAX } from './iova-range.js';

/** The compat IOAS, or ENODEV (get_compat_ioas). */
export function compatIoas(ctx: IommufdFile): Ioas {
  return ctx.vfioIoas ?? fail('ENODEV', 'the iommufd has no compat IOAS (IOMMU_VFIO_IOAS or a VFIO group creates one)');
}

/** An integer ioctl argument; a struct pointer never equals a small constant. */
function intArg(arg: IoctlArg): bigint {
  return arg instanceof Uint8Array ? -1n : BigInt(arg);
}

/** iommufd_vfio_ioctl: the type1 ioctls iommufd answers; VFIO_IOMMU_DIRTY_PAGES and the rest are ENOTTY. */
export function vfioCompatIoctl(ctx: IommufdFile, request: number, arg: IoctlArg): number {
  switch (request) {
    case VFIO_GET_API_VERSION:
      return VFIO_API_VERSION;
    case VFIO_SET_IOMMU:
      return setIommu(ctx, intArg(arg));
    case VFIO_CHECK_EXTENSION:
      return checkExtension(ctx, intArg(arg));
    case VFIO_IOMMU_GET_INFO:
      return compatGetInfo(() => compatIoas(ctx), UserArg.of(arg, ctx.kernel.memory));
    case VFIO_IOMMU_MAP_DMA:
      return mapDma(ctx, UserArg.of(arg, ctx.kernel.memory));
    case VFIO_IOMMU_UNMAP_DMA:
      return unmapDma(ctx, UserArg.of(arg, ctx.kernel.memory));
    default:
      return fail('ENOTTY', `request 0x${request.toString(16)} is not served by iommufd's VFIO compat container`);
  }
}

function checkExtension(ctx: IommufdFile, type: bigint): number {
  if (type === BigInt(VFIO_TYPE1_IOMMU) || type === BigInt(VFIO_TYPE1v2_IOMMU) || type === BigInt(VFIO_UNMAP_ALL)) return 1;
  if (type !== BigInt(VFIO_DMA_CC_IOMMU)) return 0;
  // iommufd_vfio_cc_iommu: no SimHost domain enforces cache coherency (VT-d without snoop control).
  return compatIoas(ctx).hwpts.size ? 0 : 1;
}

/** VFIO_SET_IOMMU: TYPE1 or TYPE1v2 (EINVAL otherwise) once a group made the IOAS (ENODEV); v1 disables large pages. */
function setIommu(ctx: IommufdFile, type: bigint): number {
  if (type !== BigInt(VFIO_TYPE1_IOMMU) && type !== BigInt(VFIO_TYPE1v2_IOMMU)) fail('EINVAL', `IOMMU type ${type} is not type1`);
  const ioas = compatIoas(ctx);
  // Type1 v1 may unmap inside a mapping: only possible without huge IOPTEs.
  if (type === BigInt(VFIO_TYPE1_IOMMU)) disableLargePages(ioas.iopt);
  return 0;
}

/** VFIO_IOMMU_MAP_DMA on the compat IOAS: a fixed-IOVA IOMMU_IOAS_MAP. */
function mapDma(ctx: IommufdFile, user: UserArg): number {
  const map = vfio_iommu_type1_dma_map.decode(user.read(0, vfio_iommu_type1_dma_map.size));
  if (map.argsz < vfio_iommu_type1_dma_map.size || map.flags & ~(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)) {
    fail('EINVAL', 'argsz too small or unknown flags');
  }
  const ioas = compatIoas(ctx);
  if (map.vaddr + map.size > U64_MAX) fail('EOVERFLOW', 'vaddr + size wraps');
  if (!map.size || map.size > U64_MAX - PAGE_SIZE) fail('EINVAL', `bad size ${hex(map.size)}`);
  const write = (map.flags & VFIO_DMA_MAP_FLAG_WRITE) !== 0;
  const pages = new IoptPages(map.vaddr, map.size, write);
  ioas.iopt.map([{ pages, startByte: 0n, length: map.size }], map.size, map.iova, { read: (map.flags & VFIO_DMA_MAP_FLAG_READ) !== 0, write });
  return 0;
}

/**
 * VFIO_IOMMU_UNMAP_DMA on the compat IOAS: GET_DIRTY_BITMAP and VADDR are unknown flags (EINVAL).
 * After type1 v1's SET_IOMMU the range is cut out of bigger mappings first. An empty range is
 * success with size 0 (6.12 stable, "Make vfio_compat's unmap succeed if the range is already
 * empty"). The size unmapped is written back, even when an area stuck out (ENOENT).
 */
function unmapDma(ctx: IommufdFile, user: UserArg): number {
  const minsz = vfio_iommu_type1_dma_unmap.size;
  const bytes = user.read(0, minsz);
  const unmap = vfio_iommu_type1_dma_unmap.decode(bytes);
  if (unmap.argsz < minsz || unmap.flags & ~VFIO_DMA_UNMAP_FLAG_ALL) fail('EINVAL', 'argsz too small or unsupported flags');
  const ioas = compatIoas(ctx);
  let result;
  if (unmap.flags & VFIO_DMA_UNMAP_FLAG_ALL) {
    if (unmap.iova || unmap.size) fail('EINVAL', 'UNMAP_FLAG_ALL needs iova and size 0');
    result = ioas.iopt.unmap(0n, U64_MAX);
  } else {
    if (ioas.iopt.disableLargePages) {
      const end = (unmap.iova + unmap.size - 1n) & U64_MAX;
      ioas.iopt.cut(unmap.iova ? [end, unmap.iova - 1n] : [end]);
    }
    if (!unmap.size) fail('EINVAL', 'zero size');
    if (unmap.iova + unmap.size - 1n > U64_MAX) fail('EOVERFLOW', 'range wraps');
    result = ioas.iopt.unmap(unmap.iova, unmap.iova + unmap.size - 1n);
  }
  vfio_iommu_type1_dma_unmap.set(bytes, 'size', result.unmapped);
  user.write(0, bytes.subarray(0, minsz));
  if (result.straddled) fail('ENOENT', 'a mapping sticks out of the range');
  return 0;
}

/** iommufd_vfio_compat_ioas_create: a VFIO group set to this iommufd makes the compat IOAS if there is none. */
export function compatCreateIoas(ctx: IommufdFile): void {
  if (ctx.vfioIoas) return;
  ctx.vfioIoas = ctx.objects.add(new Ioas(ctx));
}

/**
 * A device opened through a group set to this iommufd: bind it and attach it to the compat IOAS
 * (vfio_df_iommufd_bind + vfio_iommufd_compat_attach_ioas). ENODEV if the compat IOAS is gone.
 */
export function compatBindDevice(ctx: IommufdFile, device: SimDevice): number {
  const devid = ctx.bindDevice(device);
  try {
    ctx.attachDevice(devid, compatIoas(ctx).id);
  } catch (e) {
    ctx.unbindDevice(devid);
    throw e;
  }
  return devid;
}
