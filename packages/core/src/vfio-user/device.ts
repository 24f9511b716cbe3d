// The device description commands: DEVICE_GET_INFO, DEVICE_GET_REGION_INFO (with the sparse-mmap
// capability), DEVICE_GET_IRQ_INFO and DEVICE_SET_IRQS (DEVICE_GET_REGION_IO_FDS: region-io-fds.ts).

import {
  VFIO_IRQ_SET_ACTION_TYPE_MASK, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
  VFIO_IRQ_SET_DATA_TYPE_MASK, VFIO_REGION_INFO_CAP_SPARSE_MMAP, VFIO_REGION_INFO_FLAG_CAPS,
} from '../uapi/vfio.js';
import {
  VFIO_USER_DEVICE_GET_INFO, VFIO_USER_DEVICE_GET_IRQ_INFO, VFIO_USER_DEVICE_GET_REGION_INFO, VFIO_USER_DEVICE_SET_IRQS,
} from './constants.js';
import { PayloadReader, PayloadWriter, expectFds } from './payload.js';

/** The argsz-led query of GET_INFO, GET_REGION_INFO and GET_IRQ_INFO. */
export interface VfioUserQuery {
  /** The largest reply payload the client takes. */
  readonly argsz: number;
  /** The region or IRQ index asked about (0 for GET_INFO). */
  readonly index: number;
}

const QUERY_SIZE: Readonly<Record<number, number>> = {
  [VFIO_USER_DEVICE_GET_INFO]: 16, [VFIO_USER_DEVICE_GET_REGION_INFO]: 32, [VFIO_USER_DEVICE_GET_IRQ_INFO]: 16,
};
const INDEX_AT: Readonly<Record<number, number>> = {
  [VFIO_USER_DEVICE_GET_REGION_INFO]: 8, [VFIO_USER_DEVICE_GET_IRQ_INFO]: 8,
};

/**
 * Decode one of the three queries: the fixed structure (QEMU sends exactly it), argsz at least
 * the fixed reply, and no fds.
 */
export function decodeQuery(command: number, payload: Uint8Array, fds: readonly number[]): VfioUserQuery {
  const r = new PayloadReader(command, payload);
  const size = QUERY_SIZE[command];
  if (size === undefined) return r.fail('is not a query');
  r.exactly(size, 'the query structure');
  expectFds(command, fds, [0], 'a query carries none');
  const argsz = r.u32(0);
  if (argsz < size) r.fail(`argsz ${argsz} is smaller than the reply structure (${size})`);
  const at = INDEX_AT[command];
  return { argsz, index: at === undefined ? 0 : r.u32(at) };
}

/** Encode a query as a client sends it. */
export function encodeQuery(command: number, index: number, argsz?: number): Uint8Array {
  const size = QUERY_SIZE[command] ?? 16;
  const w = new PayloadWriter(size).u32(0, argsz ?? size);
  const at = INDEX_AT[command];
  if (at !== undefined) w.u32(at, index);
  return w.bytes;
}

/** DEVICE_GET_INFO reply. */
export interface VfioUserDeviceInfo {
  readonly flags: number;
  readonly numRegions: number;
  readonly numIrqs: number;
}

export function encodeDeviceInfo(i: VfioUserDeviceInfo): Uint8Array {
  return new PayloadWriter(16).u32(0, 16).u32(4, i.flags).u32(8, i.numRegions).u32(12, i.numIrqs).bytes;
}

export function decodeDeviceInfo(payload: Uint8Array): VfioUserDeviceInfo {
  const r = new PayloadReader(VFIO_USER_DEVICE_GET_INFO, payload);
  r.need(16, 'the device info');
  return { flags: r.u32(4), numRegions: r.u32(8), numIrqs: r.u32(12) };
}

/** A part of a region the client may mmap: `size` bytes at `offset` into the region. */
export interface VfioUserSparseArea {
  readonly offset: bigint;
  readonly size: bigint;
}

/** DEVICE_GET_REGION_INFO reply. `mmapOffset` is the file offset for a mappable region. */
export interface VfioUserRegionInfo {
  readonly index: number;
  /** VFIO_REGION_INFO_FLAG_* (CAPS is set by the encoder when there are areas). */
  readonly flags: number;
  readonly size: bigint;
  readonly mmapOffset: bigint;
  /** The sparse-mmap capability's areas, when only parts of the region can be mapped. */
  readonly sparse?: readonly VfioUserSparseArea[];
}

const REGION_INFO_SIZE = 32;

/**
 * Encode a region info reply. argsz is the full size needed; when the client's `maxArgsz` is
 * smaller, the capability is left out (argsz still says how much it needs) and so is the CAPS
 * flag: QEMU's client refuses CAPS with a cap_offset outside the reply before it retries with the
 * larger argsz (hw/vfio-user/device.c), where the kernel would set CAPS with cap_offset 0.
 */
export function encodeRegionInfo(info: VfioUserRegionInfo, maxArgsz: number): Uint8Array {
  const areas = info.sparse ?? [];
  const capSize = areas.length ? 16 + 16 * areas.length : 0;
  const full = REGION_INFO_SIZE + capSize;
  const fits = full <= maxArgsz;
  const w = new PayloadWriter(fits ? full : REGION_INFO_SIZE);
  w.u32(0, full).u32(4, info.flags | (areas.length && fits ? VFIO_REGION_INFO_FLAG_CAPS : 0)).u32(8, info.index)
    .u32(12, areas.length && fits ? REGION_INFO_SIZE : 0).u64(16, info.size).u64(24, info.mmapOffset);
  if (areas.length && fits) {
    // vfio_info_cap_header {id, version 1, next 0}, then nr_areas, reserved, the areas.
    w.u16(32, VFIO_REGION_INFO_CAP_SPARSE_MMAP).u16(34, 1).u32(36, 0).u32(40, areas.length).u32(44, 0);
    areas.forEach((a, i) => w.u64(48 + 16 * i, a.offset).u64(56 + 16 * i, a.size));
  }
  return w.bytes;
}

/** Decode a region info reply, walking the capability chain (bounded, loop-free). */
export function decodeRegionInfo(payload: Uint8Array): VfioUserRegionInfo & { readonly argsz: number } {
  const r = new PayloadReader(VFIO_USER_DEVICE_GET_REGION_INFO, payload);
  r.need(REGION_INFO_SIZE, 'the region info');
  const flags = r.u32(4);
  let sparse: VfioUserSparseArea[] | undefined;
  let next = flags & VFIO_REGION_INFO_FLAG_CAPS ? r.u32(12) : 0;
  for (let hops = 0; next !== 0; hops++) {
    if (hops >= 16 || next < REGION_INFO_SIZE || next % 4) r.fail(`capability chain broken at offset ${next}`);
    r.need(next + 8, 'a capability header');
    const id = r.u16(next);
    const following = r.u32(next + 4);
    if (id === VFIO_REGION_INFO_CAP_SPARSE_MMAP) {
      r.need(next + 16, 'the sparse-mmap capability');
      const n = r.u32(next + 8);
      if (n > 1024) r.fail(`${n} sparse areas is more than 1024`);
      r.need(next + 16 + 16 * n, `${n} sparse areas`);
      sparse = Array.from({ length: n }, (_, i) => ({ offset: r.u64(next + 16 + 16 * i), size: r.u64(next + 24 + 16 * i) }));
    }
    if (following !== 0 && following <= next) r.fail('capability chain goes backwards');
    next = following;
  }
  return { argsz: r.u32(0), index: r.u32(8), flags, size: r.u64(16), mmapOffset: r.u64(24), ...(sparse ? { sparse } : {}) };
}

/** DEVICE_GET_IRQ_INFO reply. */
export interface VfioUserIrqInfo {
  readonly index: number;
  readonly flags: number;
  readonly count: number;
}

export function encodeIrqInfo(i: VfioUserIrqInfo): Uint8Array {
  return new PayloadWriter(16).u32(0, 16).u32(4, i.flags).u32(8, i.index).u32(12, i.count).bytes;
}

export function decodeIrqInfo(payload: Uint8Array): VfioUserIrqInfo {
  const r = new PayloadReader(VFIO_USER_DEVICE_GET_IRQ_INFO, payload);
  r.need(16, 'the IRQ info');
  return { flags: r.u32(4), index: r.u32(8), count: r.u32(12) };
}

/** DEVICE_SET_IRQS request. `bools` for DATA_BOOL; the eventfds are the message's fds. */
export interface VfioUserSetIrqs {
  readonly flags: number;
  readonly index: number;
  readonly start: number;
  readonly count: number;
  readonly bools?: Uint8Array;
}

/**
 * Decode SET_IRQS: exactly one DATA and one ACTION flag; argsz equal to the payload; DATA_BOOL
 * with `count` bytes of data; DATA_EVENTFD with `count` fds (or none, to de-assign); no fds
 * otherwise; start + count within 32 bits.
 */
export function decodeSetIrqs(payload: Uint8Array, fds: readonly number[]): VfioUserSetIrqs {
  const r = new PayloadReader(VFIO_USER_DEVICE_SET_IRQS, payload);
  r.need(20, 'the IRQ set structure');
  const s = { argsz: r.u32(0), flags: r.u32(4), index: r.u32(8), start: r.u32(12), count: r.u32(16) };
  if (s.argsz !== payload.byteLength) r.fail(`argsz ${s.argsz} does not match the payload (${payload.byteLength})`);
  const data = s.flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
  const action = s.flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
  if (s.flags & ~(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK)) r.fail(`unknown flags 0x${s.flags.toString(16)}`);
  if (!oneBit(data) || !oneBit(action)) r.fail(`flags 0x${s.flags.toString(16)} need exactly one DATA and one ACTION type`);
  if (s.start + s.count > 0xffff_ffff) r.fail('start + count overflows');
  if (data === VFIO_IRQ_SET_DATA_BOOL) {
    r.exactly(20 + s.count, `${s.count} booleans`);
    expectFds(VFIO_USER_DEVICE_SET_IRQS, fds, [0], 'DATA_BOOL carries none');
    return { ...s, bools: r.slice(20, s.count) };
  }
  r.exactly(20, 'an IRQ set without inline data');
  if (data === VFIO_IRQ_SET_DATA_EVENTFD) expectFds(VFIO_USER_DEVICE_SET_IRQS, fds, [0, s.count], `DATA_EVENTFD takes ${s.count} (or none)`);
  else if (data === VFIO_IRQ_SET_DATA_NONE) expectFds(VFIO_USER_DEVICE_SET_IRQS, fds, [0], 'DATA_NONE carries none');
  return s;
}

export function encodeSetIrqs(s: VfioUserSetIrqs): Uint8Array {
  const n = s.bools?.byteLength ?? 0;
  return new PayloadWriter(20 + n).u32(0, 20 + n).u32(4, s.flags).u32(8, s.index).u32(12, s.start).u32(16, s.count)
    .set(20, s.bools ?? new Uint8Array(0)).bytes;
}

const oneBit = (v: number): boolean => v !== 0 && (v & (v - 1)) === 0;
