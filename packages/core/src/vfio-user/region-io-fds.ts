// DEVICE_GET_REGION_IO_FDS (QEMU docs/interop/vfio-user.rst): the server names sub-regions of a
// region whose accesses it wants to hear through a file descriptor instead of REGION_WRITE (an
// ioeventfd KVM signals on a guest write, or an ioregionfd), with the fds as SCM_RIGHTS.

import {
  VFIO_USER_DEVICE_GET_REGION_IO_FDS, VFIO_USER_IOEVENTFD_FLAG_DATAMATCH, VFIO_USER_IOEVENTFD_FLAG_PIO,
  VFIO_USER_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY, VFIO_USER_IOREGIONFD_FLAG_PIO, VFIO_USER_IOREGIONFD_FLAG_POSTED_WRITES,
  VFIO_USER_IO_FD_TYPE_IOEVENTFD, VFIO_USER_IO_FD_TYPE_IOREGIONFD,
} from './constants.js';
import { PayloadReader, PayloadWriter, expectFds } from './payload.js';

/** Bytes of the request and of the reply before its sub-regions. */
export const VFIO_USER_REGION_IO_FDS_SIZE = 16;
/** Bytes of one sub-region (both types today; a reply's argsz and count give the real stride). */
export const VFIO_USER_SUB_REGION_IO_FD_SIZE = 40;

const IOEVENTFD_FLAGS = VFIO_USER_IOEVENTFD_FLAG_DATAMATCH | VFIO_USER_IOEVENTFD_FLAG_PIO | VFIO_USER_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY;
const IOREGIONFD_FLAGS = VFIO_USER_IOREGIONFD_FLAG_PIO | VFIO_USER_IOREGIONFD_FLAG_POSTED_WRITES;
/** The lengths KVM_IOEVENTFD takes (0: a write of any width). */
const IOEVENTFD_SIZES: readonly bigint[] = [0n, 1n, 2n, 4n, 8n];

/** The request: which region, and the largest reply payload the client takes. */
export interface VfioUserRegionIoFdsRequest {
  readonly argsz: number;
  readonly index: number;
}

/** One sub-region: `size` bytes at `offset` of the region, heard through fd number `fdIndex` of the reply. */
interface SubRegionBase {
  readonly offset: bigint;
  /** 0: any access width (an ioeventfd without datamatch; a posted ioregionfd). */
  readonly size: bigint;
  /** Index into the reply's fds; several sub-regions may share one. */
  readonly fdIndex: number;
  readonly flags: number;
}

/** A sub-region whose writes signal an eventfd (KVM_IOEVENTFD's fields). */
export interface VfioUserIoeventfdSubRegion extends SubRegionBase {
  readonly type: 'ioeventfd';
  /** Present exactly when `flags` has VFIO_USER_IOEVENTFD_FLAG_DATAMATCH: only writes of this value signal. */
  readonly datamatch?: bigint;
}

/** A sub-region whose accesses travel as ioregionfd messages carrying `userData`. */
export interface VfioUserIoregionfdSubRegion extends SubRegionBase {
  readonly type: 'ioregionfd';
  readonly userData: bigint;
}

export type VfioUserIoFdSubRegion = VfioUserIoeventfdSubRegion | VfioUserIoregionfdSubRegion;

/** A decoded reply. `subRegions` is absent when the client's argsz was too small for them. */
export interface VfioUserRegionIoFds {
  /** The payload size the whole reply needs. */
  readonly argsz: number;
  readonly index: number;
  readonly count: number;
  readonly subRegions?: readonly VfioUserIoFdSubRegion[];
}

/** Encode the request for region `index` (argsz: room for `room` sub-regions). */
export function encodeRegionIoFdsRequest(index: number, room = 0): Uint8Array {
  const argsz = VFIO_USER_REGION_IO_FDS_SIZE + room * VFIO_USER_SUB_REGION_IO_FD_SIZE;
  return new PayloadWriter(VFIO_USER_REGION_IO_FDS_SIZE).u32(0, argsz).u32(8, index).bytes;
}

/**
 * Decode the request: exactly the 16-byte structure, no fds, argsz at least the reply's fixed
 * part, flags and count zero (the specification: "all other fields must be zero").
 */
export function decodeRegionIoFdsRequest(payload: Uint8Array, fds: readonly number[]): VfioUserRegionIoFdsRequest {
  const r = new PayloadReader(VFIO_USER_DEVICE_GET_REGION_IO_FDS, payload);
  r.exactly(VFIO_USER_REGION_IO_FDS_SIZE, 'the request structure');
  expectFds(VFIO_USER_DEVICE_GET_REGION_IO_FDS, fds, [0], 'a request carries none');
  const argsz = r.u32(0);
  if (argsz < VFIO_USER_REGION_IO_FDS_SIZE) r.fail(`argsz ${argsz} is smaller than the reply structure (16)`);
  if (r.u32(4) !== 0) r.fail(`flags 0x${r.u32(4).toString(16)} must be zero`);
  if (r.u32(12) !== 0) r.fail(`count ${r.u32(12)} must be zero in a request`);
  return { argsz, index: r.u32(8) };
}

/**
 * Encode the reply for region `index`. When the client's `maxArgsz` has no room for the
 * sub-regions, only the fixed part goes (argsz saying what is needed, count how many there are)
 * and the server must send no fds with it, as libvfio-user answers.
 * @returns the payload, and whether it carries the sub-regions (so the fds go with it).
 */
export function encodeRegionIoFdsReply(index: number, subRegions: readonly VfioUserIoFdSubRegion[], maxArgsz: number): { payload: Uint8Array; complete: boolean } {
  const full = VFIO_USER_REGION_IO_FDS_SIZE + subRegions.length * VFIO_USER_SUB_REGION_IO_FD_SIZE;
  const complete = full <= maxArgsz;
  const w = new PayloadWriter(complete ? full : VFIO_USER_REGION_IO_FDS_SIZE);
  w.u32(0, full).u32(4, 0).u32(8, index).u32(12, subRegions.length);
  if (complete) {
    subRegions.forEach((s, i) => {
      const at = VFIO_USER_REGION_IO_FDS_SIZE + i * VFIO_USER_SUB_REGION_IO_FD_SIZE;
      const type = s.type === 'ioeventfd' ? VFIO_USER_IO_FD_TYPE_IOEVENTFD : VFIO_USER_IO_FD_TYPE_IOREGIONFD;
      const data = s.type === 'ioeventfd' ? s.datamatch ?? 0n : s.userData;
      w.u64(at, s.offset).u64(at + 8, s.size).u32(at + 16, s.fdIndex).u32(at + 20, type).u32(at + 24, s.flags).u32(at + 28, 0).u64(at + 32, data);
    });
  }
  return { payload: w.bytes, complete };
}

/**
 * Decode a reply to the request for region `index` with the `fds` that came with it (which stay
 * the caller's, also when this throws). Checks: flags zero, the index asked for; either the fixed
 * part alone with no fds (argsz was too small), or argsz equal to the payload with `count`
 * entries of one stride of at least 40 bytes; each entry of a known type with known flags, an
 * fd index within the fds, a range that does not wrap, an ioeventfd length KVM takes; and every
 * fd used by some entry.
 */
export function decodeRegionIoFdsReply(payload: Uint8Array, fds: readonly number[], index: number): VfioUserRegionIoFds {
  const r = new PayloadReader(VFIO_USER_DEVICE_GET_REGION_IO_FDS, payload);
  r.need(VFIO_USER_REGION_IO_FDS_SIZE, 'the reply structure');
  const head = { argsz: r.u32(0), index: r.u32(8), count: r.u32(12) };
  if (r.u32(4) !== 0) r.fail(`reply flags 0x${r.u32(4).toString(16)} must be zero`);
  if (head.index !== index) r.fail(`the reply is for region ${head.index}, region ${index} was asked for`);
  const minimum = VFIO_USER_REGION_IO_FDS_SIZE + head.count * VFIO_USER_SUB_REGION_IO_FD_SIZE;
  if (head.argsz < minimum) r.fail(`argsz ${head.argsz} is too small for ${head.count} sub-regions (${minimum})`);
  if (payload.byteLength === VFIO_USER_REGION_IO_FDS_SIZE && head.count > 0) {
    expectFds(VFIO_USER_DEVICE_GET_REGION_IO_FDS, fds, [0], 'a reply without its sub-regions carries none');
    return head;
  }
  r.exactly(head.argsz, `argsz ${head.argsz}`);
  if (head.count === 0) {
    expectFds(VFIO_USER_DEVICE_GET_REGION_IO_FDS, fds, [0], 'a reply without sub-regions carries none');
    return { ...head, subRegions: [] };
  }
  const stride = (head.argsz - VFIO_USER_REGION_IO_FDS_SIZE) / head.count;
  if (!Number.isInteger(stride)) r.fail(`argsz ${head.argsz} is not 16 plus ${head.count} equal sub-regions`);
  if (fds.length === 0 || fds.length > head.count) {
    expectFds(VFIO_USER_DEVICE_GET_REGION_IO_FDS, fds, [], `${head.count} sub-regions use between 1 and ${head.count}`);
  }
  const used = new Set<number>();
  const subRegions = Array.from({ length: head.count }, (_, i) => {
    const s = decodeSubRegion(r, VFIO_USER_REGION_IO_FDS_SIZE + i * stride, i, fds.length);
    used.add(s.fdIndex);
    return s;
  });
  if (used.size !== fds.length) r.fail(`${fds.length - used.size} of the ${fds.length} file descriptors belong to no sub-region`);
  return { ...head, subRegions };
}

function decodeSubRegion(r: PayloadReader, at: number, i: number, fdCount: number): VfioUserIoFdSubRegion {
  const base = { offset: r.u64(at), size: r.u64(at + 8), fdIndex: r.u32(at + 16), flags: r.u32(at + 24) };
  const type = r.u32(at + 20);
  const data = r.u64(at + 32);
  const what = `sub-region ${i}`;
  if (base.fdIndex >= fdCount) r.fail(`${what}: fd_index ${base.fdIndex} is beyond the ${fdCount} file descriptors`);
  if (base.offset + base.size > 1n << 64n) r.fail(`${what}: [0x${base.offset.toString(16)}, +0x${base.size.toString(16)}) wraps`);
  if (type === VFIO_USER_IO_FD_TYPE_IOEVENTFD) {
    if (base.flags & ~IOEVENTFD_FLAGS) r.fail(`${what}: unknown ioeventfd flags 0x${base.flags.toString(16)}`);
    if (!IOEVENTFD_SIZES.includes(base.size)) r.fail(`${what}: an ioeventfd of ${base.size} bytes (KVM takes 0, 1, 2, 4, 8)`);
    const match = (base.flags & VFIO_USER_IOEVENTFD_FLAG_DATAMATCH) !== 0;
    if (match && base.size === 0n) r.fail(`${what}: datamatch needs an access width`);
    return { type: 'ioeventfd', ...base, ...(match ? { datamatch: data } : {}) };
  }
  if (type === VFIO_USER_IO_FD_TYPE_IOREGIONFD) {
    if (base.flags & ~IOREGIONFD_FLAGS) r.fail(`${what}: unknown ioregionfd flags 0x${base.flags.toString(16)}`);
    if (base.size === 0n && !(base.flags & VFIO_USER_IOREGIONFD_FLAG_POSTED_WRITES)) r.fail(`${what}: an ioregionfd of size 0 must post its writes`);
    return { type: 'ioregionfd', ...base, userData: data };
  }
  return r.fail(`${what}: unknown type ${type}`);
}
