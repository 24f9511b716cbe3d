// The differential fuzzer's iommufd operations (drivers/iommu/iommufd): IOAS alloc, map, unmap,
// copy, IOVA ranges, allowed IOVAs and options, destroy, VFIO_IOAS, HWPT alloc, GET_HW_INFO and
// IOMMU dirty tracking, each with malformed variants (unknown flags, short or long structs).

import {
  IOMMU_DESTROY, IOMMU_IOAS_ALLOC, IOMMU_IOAS_ALLOW_IOVAS, IOMMU_IOAS_COPY, IOMMU_IOAS_IOVA_RANGES, IOMMU_IOAS_MAP,
  IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, IOMMU_IOAS_UNMAP, IOMMU_OPTION,
  IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, IOMMU_VFIO_IOAS, iommu_destroy, iommu_ioas_alloc,
  iommu_ioas_allow_iovas, iommu_ioas_copy, iommu_ioas_iova_ranges, iommu_ioas_map, iommu_ioas_unmap,
  iommu_iova_range, iommu_option, iommu_vfio_ioas, O_RDWR,
} from '@vmmkit/core/uapi';
import { attempt, decoded, hex, plain, sized } from './call.js';
import { PAGE, U64_MAX, type Gen, type OpSpec } from './gen.js';
import type { Ptr, Ref } from './model.js';
import type { Run } from './run.js';

const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
/** Where in the scratch buffer each operation keeps its arrays. */
export const SCRATCH = { ranges: 0n, allow: 0x400n, hwpt: 0x800n, hwInfo: 0xc00n, bitmap: 0x1000n, mockBits: 0x3000n, misc: 0x5000n } as const;

type A = Readonly<Record<string, any>>;

/** An ioctl with a struct argument on the fd a reference names; returns the outcome and the struct after it. */
function ioctlStruct(r: Run, fd: Ref, request: number, bytes: Uint8Array) {
  const outcome = attempt(() => r.host.ioctl(r.fd(fd), request, bytes));
  return { outcome, bytes };
}

/** A scratch pointer, or now and then a bad one. */
function scratchPtr(g: Gen, at: bigint): Ptr {
  return g.bad(0.06) ? { raw: g.rng.pick([0n, 0x1000n]) } : { buf: 'scratch', off: at };
}

/** Read `length` bytes of the scratch buffer at `ptr` (if it points there) as hex, for results. */
function scratchOut(r: Run, ptr: Ptr, length: number): string {
  return 'raw' in ptr ? '' : hex(r.bytes('scratch', Number(ptr.off), length));
}

const openIommufd: OpSpec = {
  name: 'iommufd.open', family: 'iommufd', weight: 2, makes: { fd: 'iommufd' },
  gen: () => ({}),
  run(r, s) {
    const o = attempt(() => r.host.open('/dev/iommu', O_RDWR));
    return o.r === 'ok' ? { r: 'ok', v: r.madeFd(s.id, 'fd', o.v) } : { r: o.r };
  },
};

const close: OpSpec = {
  name: 'close', family: 'iommufd', weight: 1,
  gen(g) {
    const kinds = (['iommufd', 'container', 'group', 'group', 'device', 'device', 'datafd', 'datafd'] as const).filter((k) => !g.keepOpen.includes(k));
    const fd = g.ref(g.rng.pick(kinds));
    g.forget(fd);
    return { fd };
  },
  run(r, s) {
    const fd = r.fd(s.a.fd as Ref);
    const o = attempt(() => r.host.close(fd));
    if (o.r === 'ok') r.closedFd(fd);
    return plain(o);
  },
};

/**
 * IOMMU_IOAS_ALLOC, then (unless `huge`) IOMMU_OPTION_HUGE_PAGES off for it. Large IOPTEs map
 * physically contiguous pages, and which pinned pages of a real kernel are contiguous is chance:
 * with large pages off every IOPTE is one page on every host, so dirty bitmaps compare exactly.
 */
const ioasAlloc: OpSpec = {
  name: 'ioas.alloc', family: 'iommufd', weight: 8, makes: { out_ioas_id: 'ioas' },
  gen: (g) => ({ fd: g.ref('iommufd'), flags: g.bad(0.04) ? 1 : 0, huge: g.rng.chance(0.1), size: g.sizeMode() }),
  run(r, s) {
    const a = s.a as A;
    const { outcome, bytes } = ioctlStruct(r, a.fd, IOMMU_IOAS_ALLOC, sized(iommu_ioas_alloc, { flags: a.flags }, a.size));
    if (outcome.r !== 'ok') return plain(outcome);
    const id = decoded(iommu_ioas_alloc, bytes).out_ioas_id;
    const o: Record<string, string> = { out_ioas_id: r.madeId(s.id, 'out_ioas_id', id) };
    if (!a.huge) {
      o.small_pages = ioctlStruct(r, a.fd, IOMMU_OPTION, sized(iommu_option, { option_id: IOMMU_OPTION_HUGE_PAGES, op: IOMMU_OPTION_OP_SET, object_id: id, val64: 0n })).outcome.r;
    }
    return plain(outcome, o);
  },
};

const ioasMap: OpSpec = {
  name: 'ioas.map', family: 'iommufd', weight: 14,
  gen(g) {
    const { ptr, length } = g.range();
    const fixed = g.rng.chance(0.6) ? IOMMU_IOAS_MAP_FIXED_IOVA : 0;
    // The odd and read-only buffers sit at addresses of unknown alignment: place them at fixed IOVAs
    // unless one page or less is mapped (then the page offset alone decides).
    const fix = 'buf' in ptr && ptr.buf !== 'big' && (ptr.off % PAGE === 0n && length > PAGE) ? IOMMU_IOAS_MAP_FIXED_IOVA : 0;
    const flags = g.flags([IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE]) | (g.rng.chance(0.85) ? IOMMU_IOAS_MAP_READABLE : 0) | fixed | fix;
    const iova = g.iova();
    const ioas = g.ref('ioas');
    if (flags & IOMMU_IOAS_MAP_FIXED_IOVA) g.mapping(iova, length, ioas);
    return { fd: g.ctxOf(ioas), ioas, flags, ptr, length, iova, reserved: g.bad(0.03) ? 1 : 0, size: g.sizeMode() };
  },
  run(r, s) {
    const a = s.a as A;
    const bytes = sized(iommu_ioas_map, { ioas_id: r.id(a.ioas), flags: a.flags, user_va: r.ptr(a.ptr), length: a.length, iova: a.iova, __reserved: a.reserved }, a.size);
    const { outcome } = ioctlStruct(r, a.fd, IOMMU_IOAS_MAP, bytes);
    return plain(outcome, outcome.r === 'ok' ? { iova: String(decoded(iommu_ioas_map, bytes).iova) } : undefined);
  },
};

const ioasUnmap: OpSpec = {
  name: 'ioas.unmap', family: 'iommufd', weight: 7,
  gen(g) {
    const all = g.rng.chance(0.1);
    const { iova, length, ioas: where } = g.mapped(0.8);
    const ioas = where && g.clean ? where : g.ref('ioas');
    return { fd: g.ctxOf(ioas), ioas, iova: all ? 0n : iova, length: all ? U64_MAX : length, size: g.sizeMode() };
  },
  run(r, s) {
    const a = s.a as A;
    const bytes = sized(iommu_ioas_unmap, { ioas_id: r.id(a.ioas), iova: a.iova, length: a.length }, a.size);
    const { outcome } = ioctlStruct(r, a.fd, IOMMU_IOAS_UNMAP, bytes);
    return plain(outcome, outcome.r === 'ok' ? { length: String(decoded(iommu_ioas_unmap, bytes).length) } : undefined);
  },
};

const ioasCopy: OpSpec = {
  name: 'ioas.copy', family: 'iommufd', weight: 5,
  gen(g) {
    const flags = g.flags([IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, IOMMU_IOAS_MAP_FIXED_IOVA]) | (g.rng.chance(0.8) ? RW : 0);
    const src = g.mapped();
    const srcIoas = src.ioas && g.clean ? src.ioas : g.ref('ioas');
    const fd = g.ctxOf(srcIoas);
    const dst = g.refIn('ioas', fd);
    const dstIova = g.iova();
    if (flags & IOMMU_IOAS_MAP_FIXED_IOVA) g.mapping(dstIova, src.length, dst);
    return { fd, dst, src: srcIoas, flags, length: src.length, dstIova, srcIova: src.iova, size: g.sizeMode() };
  },
  run(r, s) {
    const a = s.a as A;
    const bytes = sized(iommu_ioas_copy, {
      flags: a.flags, dst_ioas_id: r.id(a.dst), src_ioas_id: r.id(a.src), length: a.length, dst_iova: a.dstIova, src_iova: a.srcIova,
    }, a.size);
    const { outcome } = ioctlStruct(r, a.fd, IOMMU_IOAS_COPY, bytes);
    return plain(outcome, outcome.r === 'ok' ? { dst_iova: String(decoded(iommu_ioas_copy, bytes).dst_iova) } : undefined);
  },
};

const ioasRanges: OpSpec = {
  name: 'ioas.iova_ranges', family: 'iommufd', weight: 4,
  gen(g) {
    const ioas = g.ref('ioas');
    return { fd: g.ctxOf(ioas), ioas, num: g.rng.int(5), ptr: scratchPtr(g, SCRATCH.ranges), reserved: g.bad(0.03) ? 1 : 0, size: g.sizeMode() };
  },
  run(r, s) {
    const a = s.a as A;
    if (!('raw' in a.ptr)) r.bytes('scratch', Number(SCRATCH.ranges), 4 * iommu_iova_range.size).fill(0);
    const bytes = sized(iommu_ioas_iova_ranges, { ioas_id: r.id(a.ioas), num_iovas: a.num, allowed_iovas: r.ptr(a.ptr), __reserved: a.reserved }, a.size);
    const { outcome } = ioctlStruct(r, a.fd, IOMMU_IOAS_IOVA_RANGES, bytes);
    // EMSGSIZE still writes num_iovas and the ranges that fit back.
    const out = decoded(iommu_ioas_iova_ranges, bytes);
    const o = { num_iovas: String(out.num_iovas), alignment: String(out.out_iova_alignment), ranges: scratchOut(r, a.ptr, a.num * iommu_iova_range.size) };
    return outcome.r === 'ok' || outcome.r === 'EMSGSIZE' ? { ...plain(outcome), o } : plain(outcome);
  },
};

const ioasAllow: OpSpec = {
  name: 'ioas.allow_iovas', family: 'iommufd', weight: 3,
  gen(g) {
    const ranges = Array.from({ length: g.rng.int(4) }, () => {
      const start = g.iova();
      return [start, g.rng.chance(0.1) ? start : (start + g.length(1024n) - 1n) & U64_MAX] as [bigint, bigint];
    });
    const ioas = g.ref('ioas');
    return { fd: g.ctxOf(ioas), ioas, ranges, ptr: scratchPtr(g, SCRATCH.allow), size: g.sizeMode() };
  },
  run(r, s) {
    const a = s.a as A;
    const ranges = a.ranges as [bigint, bigint][];
    if (!('raw' in a.ptr)) {
      ranges.forEach(([start, last], i) => r.bytes('scratch', Number(SCRATCH.allow) + i * 16, 16).set(iommu_iova_range.encode({ start, last })));
    }
    const bytes = sized(iommu_ioas_allow_iovas, { ioas_id: r.id(a.ioas), num_iovas: ranges.length, allowed_iovas: r.ptr(a.ptr) }, a.size);
    return plain(ioctlStruct(r, a.fd, IOMMU_IOAS_ALLOW_IOVAS, bytes).outcome);
  },
};

const option: OpSpec = {
  name: 'option', family: 'iommufd', weight: 4,
  gen: (g) => ({
    // Large pages are never turned (back) on: see ioas.alloc.
    fd: g.ref('iommufd'), id: g.rng.weighted<number>([[1, 70], [0, 25], [7, 5]]), op: g.rng.weighted<number>([[0, 50], [1, 45], [3, 5]]),
    object: g.rng.chance(0.8) ? g.ref('ioas') : { raw: 0 }, val: g.rng.pick([0n, 0n, 2n]), size: g.sizeMode(),
  }),
  run(r, s) {
    const a = s.a as A;
    const bytes = sized(iommu_option, { option_id: a.id, op: a.op, object_id: r.id(a.object), val64: a.val }, a.size);
    const { outcome } = ioctlStruct(r, a.fd, IOMMU_OPTION, bytes);
    return plain(outcome, outcome.r === 'ok' ? { val64: String(decoded(iommu_option, bytes).val64) } : undefined);
  },
};

const destroy: OpSpec = {
  name: 'destroy', family: 'iommufd', weight: 5,
  gen(g) {
    const id = g.ref(g.rng.pick(['ioas', 'hwpt', 'devid', 'stdev'] as const));
    return { fd: g.ctxOf(id), id, size: g.sizeMode() };
  },
  run(r, s) {
    const a = s.a as A;
    return plain(ioctlStruct(r, a.fd, IOMMU_DESTROY, sized(iommu_destroy, { id: r.id(a.id) }, a.size)).outcome);
  },
};

const vfioIoas: OpSpec = {
  name: 'vfio_ioas', family: 'iommufd', weight: 3,
  gen: (g) => ({ fd: g.ref('iommufd'), op: g.rng.weighted<number>([[0, 35], [1, 35], [2, 25], [9, 5]]), ioas: g.ref('ioas'), size: g.sizeMode() }),
  run(r, s) {
    const a = s.a as A;
    const bytes = sized(iommu_vfio_ioas, { op: a.op, ioas_id: r.id(a.ioas) }, a.size);
    const { outcome } = ioctlStruct(r, a.fd, IOMMU_VFIO_IOAS, bytes);
    return plain(outcome, outcome.r === 'ok' && a.op === 0 ? { ioas_id: r.idLabel(decoded(iommu_vfio_ioas, bytes).ioas_id) } : undefined);
  },
};

export const IOMMUFD_OPS: readonly OpSpec[] = [openIommufd, close, ioasAlloc, ioasMap, ioasUnmap, ioasCopy, ioasRanges, ioasAllow, option, destroy, vfioIoas];
export { ioctlStruct, scratchOut, scratchPtr };
export type { A };
