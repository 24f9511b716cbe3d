// Region access: REGION_READ, REGION_WRITE and REGION_WRITE_MULTI (posted writes coalesced).

import {
  VFIO_USER_REGION_READ, VFIO_USER_REGION_WRITE, VFIO_USER_REGION_WRITE_MULTI, VFIO_USER_WRITE_MULTI_ENTRY,
  VFIO_USER_WRITE_MULTI_MAX,
} from './constants.js';
import { PayloadReader, PayloadWriter, expectFds } from './payload.js';

/** One region access: `count` bytes at `offset` of region `region`; `data` for writes. */
export interface VfioUserRegionAccess {
  readonly offset: bigint;
  readonly region: number;
  readonly count: number;
  readonly data?: Uint8Array;
}

/** Decode REGION_READ (16 bytes) or REGION_WRITE (16 + count bytes); count ≤ `maxCount`. */
export function decodeRegionAccess(command: number, payload: Uint8Array, fds: readonly number[], maxCount: number): VfioUserRegionAccess {
  const r = new PayloadReader(command, payload);
  if (fds.length) expectFds(command, fds, [0], 'a region access carries none');
  r.need(16, 'offset, region and count');
  const offset = r.u64(0);
  const region = r.u32(8);
  const count = r.u32(12);
  if (count > maxCount) r.fail(`count ${count} exceeds max_data_xfer_size ${maxCount}`, 'E2BIG');
  if (offset + BigInt(count) > 1n << 64n) r.fail('the access wraps');
  if (command === VFIO_USER_REGION_WRITE) {
    if (r.length !== 16 + count) r.exactly(16 + count, `a write of ${count} bytes`);
    return { offset, region, count, data: r.slice(16, count) };
  }
  r.exactly(16, 'a read request');
  return { offset, region, count };
}

/** Encode a REGION_READ request, a REGION_WRITE request (with data) or a REGION_READ reply. */
export function encodeRegionAccess(a: VfioUserRegionAccess): Uint8Array {
  const n = a.data?.byteLength ?? 0;
  return new PayloadWriter(16 + n).u64(0, a.offset).u32(8, a.region).u32(12, a.count).set(16, a.data ?? new Uint8Array(0)).bytes;
}

/** Decode a REGION_READ reply: the data must be the count asked for. */
export function decodeRegionReadReply(payload: Uint8Array, expected: number): Uint8Array {
  const r = new PayloadReader(VFIO_USER_REGION_READ, payload);
  r.need(16, 'a read reply');
  if (r.u32(12) !== expected) r.fail(`reply count ${r.u32(12)}, asked for ${expected}`);
  if (r.length !== 16 + expected) r.exactly(16 + expected, `a reply of ${expected} bytes`);
  return r.slice(16, expected);
}

/** Decode REGION_WRITE_MULTI: wr_cnt entries of 24 bytes, each writing 1..8 bytes. */
export function decodeWriteMulti(payload: Uint8Array, fds: readonly number[]): VfioUserRegionAccess[] {
  const r = new PayloadReader(VFIO_USER_REGION_WRITE_MULTI, payload);
  expectFds(VFIO_USER_REGION_WRITE_MULTI, fds, [0], 'a write-multi carries none');
  r.need(8, 'wr_cnt');
  const n = r.u64(0);
  if (n === 0n || n > BigInt(VFIO_USER_WRITE_MULTI_MAX)) r.fail(`wr_cnt ${n} is not in [1, ${VFIO_USER_WRITE_MULTI_MAX}]`);
  r.exactly(8 + Number(n) * VFIO_USER_WRITE_MULTI_ENTRY, `${n} writes`);
  return Array.from({ length: Number(n) }, (_, i) => {
    const at = 8 + i * VFIO_USER_WRITE_MULTI_ENTRY;
    const count = r.u32(at + 12);
    if (count < 1 || count > 8) r.fail(`write ${i} has count ${count}, not 1..8`);
    return { offset: r.u64(at), region: r.u32(at + 8), count, data: r.slice(at + 16, count) };
  });
}

export function encodeWriteMulti(writes: readonly VfioUserRegionAccess[]): Uint8Array {
  const w = new PayloadWriter(8 + writes.length * VFIO_USER_WRITE_MULTI_ENTRY).u64(0, BigInt(writes.length));
  writes.forEach((a, i) => {
    const at = 8 + i * VFIO_USER_WRITE_MULTI_ENTRY;
    w.u64(at, a.offset).u32(at + 8, a.region).u32(at + 12, a.count).set(at + 16, (a.data ?? new Uint8Array(0)).subarray(0, 8));
  });
  return w.bytes;
}

export function encodeWriteMultiReply(done: number): Uint8Array {
  return new PayloadWriter(8).u64(0, BigInt(done)).bytes;
}
