// The DMA commands: DMA_MAP / DMA_UNMAP (client → server) and DMA_READ / DMA_WRITE (server →
// client, the message path for windows without a file).

import { VFIO_DMA_UNMAP_FLAG_ALL } from '../uapi/vfio.js';
import { VFIO_USER_DMA_MAP, VFIO_USER_DMA_READ, VFIO_USER_DMA_UNMAP, VFIO_USER_DMA_WRITE } from './constants.js';
import { PayloadReader, PayloadWriter, expectFds } from './payload.js';

/** A DMA window: `size` bytes at DMA address `address`, at `offset` of the file sent with it. */
export interface VfioUserDmaMap {
  readonly argsz: number;
  /** VFIO_USER_F_DMA_REGION_READ | _WRITE. */
  readonly flags: number;
  readonly offset: bigint;
  readonly address: bigint;
  readonly size: bigint;
}

export const DMA_MAP_SIZE = 32;
export const DMA_UNMAP_SIZE = 24;

/** Decode DMA_MAP: 32 bytes, argsz 32, at most one fd, a non-empty window that does not wrap. */
export function decodeDmaMap(payload: Uint8Array, fds: readonly number[]): VfioUserDmaMap {
  const r = new PayloadReader(VFIO_USER_DMA_MAP, payload);
  r.exactly(DMA_MAP_SIZE, 'a DMA map');
  expectFds(VFIO_USER_DMA_MAP, fds, [0, 1], 'a DMA map carries at most one');
  const m = { argsz: r.u32(0), flags: r.u32(4), offset: r.u64(8), address: r.u64(16), size: r.u64(24) };
  if (m.argsz !== DMA_MAP_SIZE) r.fail(`argsz ${m.argsz} is not ${DMA_MAP_SIZE}`);
  if (m.flags & ~3) r.fail(`unknown flags 0x${m.flags.toString(16)}`);
  checkWindow(r, m.address, m.size);
  if (fds.length === 0 && m.offset !== 0n) r.fail('a window without a file has a file offset');
  return m;
}

export function encodeDmaMap(m: Omit<VfioUserDmaMap, 'argsz'>): Uint8Array {
  return new PayloadWriter(DMA_MAP_SIZE).u32(0, DMA_MAP_SIZE).u32(4, m.flags).u64(8, m.offset).u64(16, m.address).u64(24, m.size).bytes;
}

/** A DMA_UNMAP request, and its reply (the same entry). */
export interface VfioUserDmaUnmap {
  readonly argsz: number;
  readonly flags: number;
  readonly address: bigint;
  readonly size: bigint;
}

export function decodeDmaUnmap(payload: Uint8Array, fds: readonly number[]): VfioUserDmaUnmap {
  const r = new PayloadReader(VFIO_USER_DMA_UNMAP, payload);
  r.exactly(DMA_UNMAP_SIZE, 'a DMA unmap');
  expectFds(VFIO_USER_DMA_UNMAP, fds, [0], 'an unmap carries none');
  const u = { argsz: r.u32(0), flags: r.u32(4), address: r.u64(8), size: r.u64(16) };
  if (u.argsz < DMA_UNMAP_SIZE) r.fail(`argsz ${u.argsz} is smaller than the reply (${DMA_UNMAP_SIZE})`);
  if (u.flags & ~VFIO_DMA_UNMAP_FLAG_ALL) r.fail(`flags 0x${u.flags.toString(16)} are not defined`);
  // QEMU's client sends VFIO's UNMAP_FLAG_ALL (bit 1) to drop every window; address and size
  // mean nothing then.
  if (!(u.flags & VFIO_DMA_UNMAP_FLAG_ALL)) checkWindow(r, u.address, u.size);
  return u;
}

export function encodeDmaUnmap(u: Omit<VfioUserDmaUnmap, 'argsz'> & { argsz?: number }): Uint8Array {
  return new PayloadWriter(DMA_UNMAP_SIZE).u32(0, u.argsz ?? DMA_UNMAP_SIZE).u32(4, u.flags).u64(8, u.address).u64(16, u.size).bytes;
}

function checkWindow(r: PayloadReader, address: bigint, size: bigint): void {
  if (size === 0n) r.fail('the window is empty');
  if (address + size > 1n << 64n) r.fail('the window wraps past the end of the address space');
}

/** DMA_READ request (address, count) and DMA_WRITE request (address, count, data). */
export interface VfioUserDmaAccess {
  readonly address: bigint;
  readonly count: bigint;
  /** DMA_WRITE request and DMA_READ reply: the bytes. */
  readonly data?: Uint8Array;
}

/** DMA_READ / DMA_WRITE requests: 16 bytes, then `count` data bytes for a write; count ≤ `maxCount`. */
export function decodeDmaAccess(command: number, payload: Uint8Array, fds: readonly number[], maxCount: number): VfioUserDmaAccess {
  const r = new PayloadReader(command, payload);
  expectFds(command, fds, [0], 'a DMA access carries none');
  r.need(16, 'address and count');
  const address = r.u64(0);
  const count = r.u64(8);
  if (count > BigInt(maxCount)) r.fail(`count ${count} exceeds max_data_xfer_size ${maxCount}`, 'E2BIG');
  if (command === VFIO_USER_DMA_WRITE) {
    r.exactly(16 + Number(count), `a write of ${count} bytes`);
    return { address, count, data: r.slice(16, Number(count)) };
  }
  r.exactly(16, 'a read request');
  return { address, count };
}

export function encodeDmaRead(address: bigint, count: number): Uint8Array {
  return new PayloadWriter(16).u64(0, address).u64(8, BigInt(count)).bytes;
}

export function encodeDmaWrite(address: bigint, data: Uint8Array): Uint8Array {
  return new PayloadWriter(16 + data.byteLength).u64(0, address).u64(8, BigInt(data.byteLength)).set(16, data).bytes;
}

/** DMA_READ reply: address, count and the data at offset 16; the count must match the data. */
export function decodeDmaReadReply(payload: Uint8Array, expected: number): Uint8Array {
  const r = new PayloadReader(VFIO_USER_DMA_READ, payload);
  r.need(16, 'a read reply');
  const count = r.u64(8);
  if (count !== BigInt(expected)) r.fail(`reply count ${count}, asked for ${expected}`);
  r.exactly(16 + expected, `a reply of ${expected} bytes`);
  return r.slice(16, expected);
}

export function encodeDmaReadReply(address: bigint, data: Uint8Array): Uint8Array {
  return encodeDmaWrite(address, data);
}

/** DMA_WRITE reply: address (8) and count (4), as the specification lays it out. */
export function encodeDmaWriteReply(address: bigint, count: number): Uint8Array {
  return new PayloadWriter(12).u64(0, address).u32(8, count).bytes;
}
