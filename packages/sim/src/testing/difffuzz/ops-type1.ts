// The differential fuzzer's legacy VFIO operations (drivers/vfio/container.c, group.c,
// vfio_iommu_type1.c, and iommufd's compat container): containers, groups, SET_IOMMU, DMA
// map/unmap, dirty page tracking and GET_INFO, on /dev/vfio/vfio or on an iommufd fd.

import {
  O_RDWR, VFIO_CHECK_EXTENSION, VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_VADDR, VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_DMA_UNMAP_FLAG_ALL, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, VFIO_DMA_UNMAP_FLAG_VADDR, VFIO_GET_API_VERSION,
  VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_GET_STATUS, VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER,
  VFIO_IOMMU_DIRTY_PAGES, VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA, VFIO_SET_IOMMU,
  vfio_bitmap, vfio_group_status, vfio_iommu_type1_dirty_bitmap_get, vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dma_unmap,
} from '@vmmkit/core/uapi';
import { attempt, decoded, hex, plain, sized } from './call.js';
import { PAGE, type Gen, type OpSpec, type SizeMode } from './gen.js';
import type { Ref } from './model.js';
import { ioctlStruct, SCRATCH, scratchOut, scratchPtr, type A } from './ops-iommufd.js';

/** A VFIO struct with a payload after its fixed part: argsz covers both, or as `mode` bends it. */
function withPayload(head: Uint8Array, payload: Uint8Array, mode: SizeMode): Uint8Array {
  const bytes = new Uint8Array(head.byteLength + payload.byteLength + 64);
  bytes.set(head);
  bytes.set(payload, head.byteLength);
  const exact = head.byteLength + payload.byteLength;
  new DataView(bytes.buffer).setUint32(0, mode === 'short' ? exact - 4 : mode === 'exact' ? exact : exact + 8, true);
  if (mode === 'long1') bytes[exact + 5] = 1;
  return bytes;
}

/** A container: /dev/vfio/vfio mostly, iommufd's compat container now and then (whichever the sequence has). */
function containerRef(g: Gen): Ref {
  const [legacy, compat] = [g.has('container'), g.has('iommufd')];
  return g.ref(legacy && (!compat || g.rng.chance(0.8)) ? 'container' : 'iommufd');
}

const openContainer: OpSpec = {
  name: 'container.open', family: 'type1', weight: 3, makes: { fd: 'container' },
  gen: () => ({}),
  run(r, s) {
    const o = attempt(() => r.host.open('/dev/vfio/vfio', O_RDWR));
    return o.r === 'ok' ? { r: 'ok', v: r.madeFd(s.id, 'fd', o.v) } : { r: o.r };
  },
};

const openGroup: OpSpec = {
  name: 'group.open', family: 'type1', weight: 4, makes: { fd: 'group' },
  gen: (g) => ({ dev: g.rng.weighted<number>([[0, 45], [1, 35], [2, 20]]) }),
  run(r, s) {
    const o = attempt(() => r.host.open(`/dev/vfio/${r.machine.devices[s.a.dev as number]!.group}`, O_RDWR));
    return o.r === 'ok' ? { r: 'ok', v: r.madeFd(s.id, 'fd', o.v) } : { r: o.r };
  },
};

const groupStatus: OpSpec = {
  name: 'group.status', family: 'type1', weight: 2,
  gen: (g) => ({ group: g.ref('group'), size: g.sizeMode() }),
  run(r, s) {
    const a = s.a as A;
    const bytes = sized(vfio_group_status, {}, a.size, 'argsz');
    const { outcome } = ioctlStruct(r, a.group, VFIO_GROUP_GET_STATUS, bytes);
    return plain(outcome, outcome.r === 'ok' ? { flags: String(decoded(vfio_group_status, bytes).flags) } : undefined);
  },
};

const setContainer: OpSpec = {
  name: 'group.set_container', family: 'type1', weight: 5,
  gen: (g) => ({ group: g.ref('group'), container: containerRef(g) }),
  run(r, s) {
    const a = s.a as A;
    const arg = new Uint8Array(8);
    new DataView(arg.buffer).setInt32(0, r.fd(a.container), true);
    return plain(ioctlStruct(r, a.group, VFIO_GROUP_SET_CONTAINER, arg).outcome);
  },
};

const unsetContainer: OpSpec = {
  name: 'group.unset_container', family: 'type1', weight: 2,
  gen: (g) => ({ group: g.ref('group') }),
  run: (r, s) => plain(attempt(() => r.host.ioctl(r.fd((s.a as A).group), VFIO_GROUP_UNSET_CONTAINER))),
};

const getDeviceFd: OpSpec = {
  name: 'group.get_device_fd', family: 'type1', weight: 3, makes: { fd: 'device' },
  gen(g) {
    // Mostly the device the group was opened for.
    const group = g.ref('group');
    const own = g.argOf(group, 'dev');
    return { group, dev: typeof own === 'number' && g.rng.chance(0.8) ? own : g.rng.weighted<number>([[0, 35], [1, 30], [2, 20], [-1, 15]]) };
  },
  run(r, s) {
    const a = s.a as A;
    const dev = a.dev >= 0 ? r.machine.devices[a.dev]! : undefined;
    const o = attempt(() => r.host.ioctl(r.fd(a.group), VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${dev?.name ?? '0000:00:1f.7'}\0`)));
    return o.r === 'ok' ? { r: 'ok', v: r.madeFd(s.id, 'fd', o.v, dev?.mdev === true) } : { r: o.r };
  },
};

const checkExtension: OpSpec = {
  name: 'container.check_extension', family: 'type1', weight: 2,
  gen: (g) => ({ container: containerRef(g), ext: g.rng.int(12), version: g.rng.chance(0.2) }),
  run(r, s) {
    const a = s.a as A;
    return plain(attempt(() => r.host.ioctl(r.fd(a.container), a.version ? VFIO_GET_API_VERSION : VFIO_CHECK_EXTENSION, a.ext)));
  },
};

const setIommu: OpSpec = {
  name: 'container.set_iommu', family: 'type1', weight: 5,
  gen: (g) => ({ container: containerRef(g), type: g.rng.weighted<number>([[3, 60], [1, 20], [6, 5], [8, 5], [9, 5], [0, 5]]) }),
  run: (r, s) => plain(attempt(() => r.host.ioctl(r.fd((s.a as A).container), VFIO_SET_IOMMU, (s.a as A).type))),
};

const type1Info: OpSpec = {
  name: 'type1.info', family: 'type1', weight: 3,
  gen: (g) => ({ container: containerRef(g), argsz: g.rng.pick([24, 24, 256, 16, 40]) }),
  run(r, s) {
    const a = s.a as A;
    const bytes = new Uint8Array(512);
    new DataView(bytes.buffer).setUint32(0, a.argsz, true);
    const { outcome } = ioctlStruct(r, a.container, VFIO_IOMMU_GET_INFO, bytes);
    return plain(outcome, outcome.r === 'ok' ? { info: hex(bytes.subarray(0, Math.max(a.argsz, 24))) } : undefined);
  },
};

const mapDma: OpSpec = {
  name: 'type1.map', family: 'type1', weight: 10,
  gen(g) {
    const { ptr, length } = g.range(32n);
    // Never neither READ nor WRITE: Linux 7.2 WARNs (generic_pt's map_pages) when iommufd's compat
    // container maps such pages into a domain; SimHost refuses them as it does (EINVAL).
    const vaddr = g.rng.chance(0.08);
    const flags = g.flags([VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE], 1 << 5) | (vaddr ? VFIO_DMA_MAP_FLAG_VADDR : g.rng.pick([VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE]));
    const iova = g.iova();
    g.mapping(iova, length);
    return { container: containerRef(g), flags, ptr, length, iova, size: g.sizeMode() };
  },
  run(r, s) {
    const a = s.a as A;
    const bytes = sized(vfio_iommu_type1_dma_map, { flags: a.flags, vaddr: r.ptr(a.ptr), iova: a.iova, size: a.length }, a.size, 'argsz');
    return plain(ioctlStruct(r, a.container, VFIO_IOMMU_MAP_DMA, bytes).outcome);
  },
};

/** A struct vfio_bitmap in scratch: its pgsize, its size in bytes and where it points. */
function bitmapArg(g: Gen, pages: bigint) {
  return {
    pgsize: g.rng.weighted<bigint>([[PAGE, 80], [2n * PAGE, 8], [0n, 4], [2048n, 8]]),
    bytes: g.rng.weighted<bigint>([[((pages + 63n) / 64n) * 8n, 80], [0n, 5], [1n, 5], [1n << 30n, 5], [8n, 5]]),
    data: scratchPtr(g, SCRATCH.bitmap),
  };
}

const unmapDma: OpSpec = {
  name: 'type1.unmap', family: 'type1', weight: 7,
  gen(g) {
    const flags = g.rng.chance(0.5) ? 0 : g.flags([VFIO_DMA_UNMAP_FLAG_ALL, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP], 1 << 6) | (g.rng.chance(0.08) ? VFIO_DMA_UNMAP_FLAG_VADDR : 0);
    const range = g.mapped();
    const all = flags & VFIO_DMA_UNMAP_FLAG_ALL && g.rng.chance(0.8);
    return { container: containerRef(g), flags, iova: all ? 0n : range.iova, length: all ? 0n : range.length, bitmap: bitmapArg(g, range.length / PAGE), size: g.sizeMode() };
  },
  run(r, s) {
    const a = s.a as A;
    const dirty = (a.flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) !== 0;
    if (dirty && !('raw' in a.bitmap.data)) r.bytes('scratch', Number(SCRATCH.bitmap), 0x2000).fill(0);
    const head = vfio_iommu_type1_dma_unmap.encode({ flags: a.flags, iova: a.iova, size: a.length });
    const payload = dirty ? vfio_bitmap.encode({ pgsize: a.bitmap.pgsize, size: a.bitmap.bytes, data: r.ptr(a.bitmap.data) }) : new Uint8Array(0);
    const bytes = withPayload(head, payload, a.size);
    const { outcome } = ioctlStruct(r, a.container, VFIO_IOMMU_UNMAP_DMA, bytes);
    if (outcome.r !== 'ok') return plain(outcome);
    const o: Record<string, string> = { size: String(decoded(vfio_iommu_type1_dma_unmap, bytes).size) };
    if (dirty) o.bitmap = scratchOut(r, a.bitmap.data, Math.min(Number(a.bitmap.bytes), 0x200));
    return plain(outcome, o);
  },
};

const dirtyPages: OpSpec = {
  name: 'type1.dirty', family: 'type1', weight: 6,
  gen(g) {
    const flags = g.rng.weighted<number>([
      [VFIO_IOMMU_DIRTY_PAGES_FLAG_START, 30], [VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, 45], [VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, 15],
      [0, 3], [VFIO_IOMMU_DIRTY_PAGES_FLAG_START | VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, 3], [1 << 5, 4],
    ]);
    const range = g.mapped();
    return { container: containerRef(g), flags, iova: range.iova, length: range.length, bitmap: bitmapArg(g, range.length / PAGE), size: g.sizeMode() };
  },
  run(r, s) {
    const a = s.a as A;
    const get = (a.flags & VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP) !== 0;
    if (get && !('raw' in a.bitmap.data)) r.bytes('scratch', Number(SCRATCH.bitmap), 0x2000).fill(0);
    const head = new Uint8Array(8);
    new DataView(head.buffer).setUint32(4, a.flags, true);
    const payload = get
      ? vfio_iommu_type1_dirty_bitmap_get.encode({ iova: a.iova, size: a.length, bitmap: { pgsize: a.bitmap.pgsize, size: a.bitmap.bytes, data: r.ptr(a.bitmap.data) } })
      : new Uint8Array(0);
    const { outcome } = ioctlStruct(r, a.container, VFIO_IOMMU_DIRTY_PAGES, withPayload(head, payload, a.size));
    return plain(outcome, outcome.r === 'ok' && get ? { bitmap: scratchOut(r, a.bitmap.data, Math.min(Number(a.bitmap.bytes), 0x200)) } : undefined);
  },
};

export const TYPE1_OPS: readonly OpSpec[] = [
  openContainer, openGroup, groupStatus, setContainer, unsetContainer, getDeviceFd, checkExtension, setIommu, type1Info, mapDma, unmapDma, dirtyPages,
];
