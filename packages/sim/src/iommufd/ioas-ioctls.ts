// The IOAS ioctls (drivers/iommu/iommufd/ioas.c): IOMMU_IOAS_ALLOC, MAP, UNMAP, COPY,
// IOVA_RANGES and ALLOW_IOVAS.

import {
  IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, iommu_ioas_alloc,
  iommu_ioas_allow_iovas, iommu_ioas_copy, iommu_ioas_iova_ranges, iommu_ioas_map, iommu_ioas_unmap,
  iommu_iova_range,
} from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import { IoptPages, type AreaProt } from './area.js';
import { Ioas } from './ioas.js';
import type { IommufdFile } from './iommufd-file.js';
import { hex, intersects, PAGE_SIZE, U64_MAX, type IovaRange } from './iova-range.js';
import type { UcmdOf } from './ucmd.js';

const MAP_FLAGS = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE;
const RANGE_SIZE = BigInt(iommu_iova_range.size);

/** IOMMU_IOAS_ALLOC: flags must be 0 (EOPNOTSUPP). */
export function ioasAlloc(ctx: IommufdFile, ucmd: UcmdOf<typeof iommu_ioas_alloc>): number {
  if (ucmd.get('flags')) fail('EOPNOTSUPP', 'IOMMU_IOAS_ALLOC takes no flags');
  const id = ctx.objects.allocId();
  ucmd.set('out_ioas_id', id);
  try {
    ucmd.respond();
  } catch (e) {
    ctx.objects.abort(id);
    throw e;
  }
  ctx.objects.finalize(id, new Ioas(ctx));
  return 0;
}

/** The IOMMU_IOAS_MAP_* protection bits as the area holds them (conv_iommu_prot). */
function protOf(flags: number): AreaProt {
  return { read: (flags & IOMMU_IOAS_MAP_READABLE) !== 0, write: (flags & IOMMU_IOAS_MAP_WRITEABLE) !== 0 };
}

/** The flag checks MAP and COPY share: EOPNOTSUPP for unknown bits, EINVAL without READABLE/WRITEABLE. */
function checkMapFlags(flags: number): void {
  if (flags & ~MAP_FLAGS) fail('EOPNOTSUPP', `unknown map flags 0x${(flags & ~MAP_FLAGS).toString(16)}`);
}

/**
 * IOMMU_IOAS_MAP: map user memory at a fixed or kernel-chosen IOVA. The memory is pinned now if
 * the IOAS has domains (EFAULT), else lazily when one attaches.
 */
export function ioasMap(ctx: IommufdFile, ucmd: UcmdOf<typeof iommu_ioas_map>): number {
  const flags = ucmd.get('flags');
  checkMapFlags(flags);
  if (ucmd.get('__reserved')) fail('EOPNOTSUPP', '__reserved must be 0');
  const [iova, length, uva] = [ucmd.get('iova'), ucmd.get('length'), ucmd.get('user_va')];
  if (iova >= U64_MAX || length >= U64_MAX) fail('EOVERFLOW', 'iova or length is U64_MAX');
  if (!(flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE))) fail('EINVAL', 'neither READABLE nor WRITEABLE');
  const ioas = ctx.objects.get<Ioas>(ucmd.get('ioas_id'), 'ioas');
  if (uva + length > U64_MAX) fail('EOVERFLOW', 'user_va + length wraps');
  if (!length || length > U64_MAX - PAGE_SIZE) fail('EINVAL', `bad length ${hex(length)}`);
  const pages = new IoptPages(uva, length, (flags & IOMMU_IOAS_MAP_WRITEABLE) !== 0);
  const fixed = flags & IOMMU_IOAS_MAP_FIXED_IOVA ? iova : undefined;
  ucmd.set('iova', ioas.iopt.map([{ pages, startByte: 0n, length }], length, fixed, protOf(flags)));
  ucmd.respond();
  return 0;
}

/**
 * IOMMU_IOAS_UNMAP: unmap whole areas inside the range (ENOENT if one sticks out, or if nothing
 * is mapped there), or everything for iova 0 / length U64_MAX. Returns the bytes unmapped.
 */
export function ioasUnmap(ctx: IommufdFile, ucmd: UcmdOf<typeof iommu_ioas_unmap>): number {
  const ioas = ctx.objects.get<Ioas>(ucmd.get('ioas_id'), 'ioas');
  const [iova, length] = [ucmd.get('iova'), ucmd.get('length')];
  let unmapped: bigint;
  if (iova === 0n && length === U64_MAX) {
    unmapped = ioas.iopt.unmap(0n, U64_MAX).unmapped;
  } else {
    if (iova >= U64_MAX || length >= U64_MAX) fail('EOVERFLOW', 'iova or length is U64_MAX');
    if (!length) fail('EINVAL', 'zero length');
    if (iova + length - 1n > U64_MAX) fail('EOVERFLOW', 'range wraps');
    const result = ioas.iopt.unmap(iova, iova + length - 1n);
    if (result.straddled) fail('ENOENT', `an area sticks out of [${hex(iova)}, +${hex(length)}]`);
    if (!result.unmapped) fail('ENOENT', `nothing is mapped in [${hex(iova)}, +${hex(length)}]`);
    unmapped = result.unmapped;
  }
  ucmd.set('length', unmapped);
  ucmd.respond();
  return 0;
}

/** IOMMU_IOAS_COPY: map the pages behind a fully mapped range of one IOAS into another. */
export function ioasCopy(ctx: IommufdFile, ucmd: UcmdOf<typeof iommu_ioas_copy>): number {
  const flags = ucmd.get('flags');
  checkMapFlags(flags);
  const [length, src, dst] = [ucmd.get('length'), ucmd.get('src_iova'), ucmd.get('dst_iova')];
  if (length >= U64_MAX || src >= U64_MAX || dst >= U64_MAX) fail('EOVERFLOW', 'a length or IOVA is U64_MAX');
  if (!(flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE))) fail('EINVAL', 'neither READABLE nor WRITEABLE');
  const slices = ctx.objects.get<Ioas>(ucmd.get('src_ioas_id'), 'ioas').iopt.getPages(src, length);
  const target = ctx.objects.get<Ioas>(ucmd.get('dst_ioas_id'), 'ioas');
  const fixed = flags & IOMMU_IOAS_MAP_FIXED_IOVA ? dst : undefined;
  ucmd.set('dst_iova', target.iopt.map(slices, length, fixed, protOf(flags)));
  ucmd.respond();
  return 0;
}

/**
 * IOMMU_IOAS_IOVA_RANGES: the usable ranges (all minus reserved), as many as `num_iovas` allows;
 * num_iovas comes back as the total, with EMSGSIZE when the array was too short.
 */
export function ioasIovaRanges(ctx: IommufdFile, ucmd: UcmdOf<typeof iommu_ioas_iova_ranges>): number {
  if (ucmd.get('__reserved')) fail('EOPNOTSUPP', '__reserved must be 0');
  const ioas = ctx.objects.get<Ioas>(ucmd.get('ioas_id'), 'ioas');
  const max = ucmd.get('num_iovas');
  const base = ucmd.get('allowed_iovas');
  const ranges = ioas.iopt.usableRanges();
  ranges.slice(0, max).forEach((r, i) => {
    ctx.kernel.memory.write(base + BigInt(i) * RANGE_SIZE, iommu_iova_range.encode({ start: r.start, last: r.last }));
  });
  ucmd.set('num_iovas', ranges.length);
  ucmd.set('out_iova_alignment', ioas.iopt.iovaAlignment);
  ucmd.respond();
  if (ranges.length > max) fail('EMSGSIZE', `${ranges.length} ranges, room for ${max}`);
  return 0;
}

/**
 * IOMMU_IOAS_ALLOW_IOVAS: replace the ranges automatic IOVA allocation may use. EINVAL for an
 * empty or overlapping range, EADDRINUSE if one hits a reserved range; nothing changes then.
 */
export function ioasAllowIovas(ctx: IommufdFile, ucmd: UcmdOf<typeof iommu_ioas_allow_iovas>): number {
  if (ucmd.get('__reserved')) fail('EOPNOTSUPP', '__reserved must be 0');
  const ioas = ctx.objects.get<Ioas>(ucmd.get('ioas_id'), 'ioas');
  const base = ucmd.get('allowed_iovas');
  const loaded: IovaRange[] = [];
  for (let i = 0; i < ucmd.get('num_iovas'); i++) {
    const r = iommu_iova_range.decode(ctx.kernel.memory.read(base + BigInt(i) * RANGE_SIZE, Number(RANGE_SIZE)));
    if (r.start >= r.last) fail('EINVAL', `allowed range ${i} [${hex(r.start)}, ${hex(r.last)}] is empty`);
    if (loaded.some((l) => intersects(l, r))) fail('EINVAL', `allowed range ${i} overlaps another`);
    loaded.push({ start: r.start, last: r.last });
  }
  if (loaded.some((r) => ioas.iopt.reservedIntersects(r.start, r.last))) fail('EADDRINUSE', 'an allowed range hits a reserved range');
  ioas.iopt.allowed = loaded.sort((a, b) => (a.start < b.start ? -1 : 1));
  return 0;
}
