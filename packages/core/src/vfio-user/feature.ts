// DEVICE_FEATURE (migration, device state, DMA logging start/stop/report) and the migration data
// commands MIG_DATA_READ / MIG_DATA_WRITE, which replace VFIO's data fd.

import {
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MASK, VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET,
} from '../uapi/vfio.js';
import { VFIO_USER_DEVICE_FEATURE, VFIO_USER_MIG_DATA_READ, VFIO_USER_MIG_DATA_WRITE } from './constants.js';
import { PayloadReader, PayloadWriter, expectFds } from './payload.js';

/** A DEVICE_FEATURE request: the feature number, GET/SET/PROBE, and the feature's data. */
export interface VfioUserFeature {
  readonly argsz: number;
  /** The whole flags word (feature number | GET | SET | PROBE). */
  readonly flags: number;
  readonly feature: number;
  readonly data: Uint8Array;
}

/** Decode DEVICE_FEATURE: argsz ≥ 8, known flag bits, GET and SET together only with PROBE. */
export function decodeFeature(payload: Uint8Array, fds: readonly number[]): VfioUserFeature {
  const r = new PayloadReader(VFIO_USER_DEVICE_FEATURE, payload);
  expectFds(VFIO_USER_DEVICE_FEATURE, fds, [0], 'a feature request carries none');
  r.need(8, 'argsz and flags');
  const argsz = r.u32(0);
  const flags = r.u32(4);
  const ops = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE;
  if (argsz < 8) r.fail(`argsz ${argsz} is smaller than the feature header`);
  if (flags & ~(VFIO_DEVICE_FEATURE_MASK | ops)) r.fail(`unknown flag bits 0x${(flags >>> 0).toString(16)}`);
  if (flags & VFIO_DEVICE_FEATURE_GET && flags & VFIO_DEVICE_FEATURE_SET && !(flags & VFIO_DEVICE_FEATURE_PROBE)) {
    r.fail('GET and SET together without PROBE');
  }
  if (!(flags & ops)) r.fail('none of GET, SET and PROBE');
  return { argsz, flags, feature: flags & VFIO_DEVICE_FEATURE_MASK, data: payload.subarray(8) };
}

/** Encode a DEVICE_FEATURE request or reply; argsz defaults to the payload size. */
export function encodeFeature(flags: number, data: Uint8Array = new Uint8Array(0), argsz?: number): Uint8Array {
  return new PayloadWriter(8 + data.byteLength).u32(0, argsz ?? 8 + data.byteLength).u32(4, flags).set(8, data).bytes;
}

/** A DEVICE_FEATURE reply: the feature's data after argsz and flags. */
export function decodeFeatureReply(payload: Uint8Array): Uint8Array {
  const r = new PayloadReader(VFIO_USER_DEVICE_FEATURE, payload);
  r.need(8, 'argsz and flags');
  return payload.subarray(8);
}

/** VFIO_DEVICE_FEATURE_MIGRATION's data: the VFIO_MIGRATION_* flags (u64). */
export function encodeMigrationFlags(flags: number): Uint8Array {
  return new PayloadWriter(8).u64(0, BigInt(flags)).bytes;
}

/** VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE's data: device_state and the unused data_fd. */
export function encodeMigState(state: number): Uint8Array {
  return new PayloadWriter(8).u32(0, state).u32(4, 0xffff_ffff).bytes;
}

export function decodeMigState(data: Uint8Array, command = VFIO_USER_DEVICE_FEATURE): number {
  const r = new PayloadReader(command, data);
  r.need(8, 'the device state');
  return r.u32(0);
}

/** A range DMA logging watches. */
export interface VfioUserLogRange {
  readonly iova: bigint;
  readonly length: bigint;
}

/** DMA_LOGGING_START's data. */
export interface VfioUserLoggingStart {
  readonly pageSize: bigint;
  readonly ranges: readonly VfioUserLogRange[];
}

/** Most ranges one DMA_LOGGING_START may carry (a sanity bound; QEMU merges to far fewer). */
export const VFIO_USER_MAX_LOG_RANGES = 4096;

/** Decode DMA_LOGGING_START: page size, num_ranges ranges, non-empty and non-wrapping. */
export function decodeLoggingStart(data: Uint8Array): VfioUserLoggingStart {
  const r = new PayloadReader(VFIO_USER_DEVICE_FEATURE, data);
  r.need(16, 'the DMA logging control');
  const n = r.u32(8);
  if (n > VFIO_USER_MAX_LOG_RANGES) r.fail(`${n} ranges is more than ${VFIO_USER_MAX_LOG_RANGES}`, 'E2BIG');
  if (r.u32(12) !== 0) r.fail('reserved field is not zero');
  r.exactly(16 + 16 * n, `${n} ranges`);
  const ranges = Array.from({ length: n }, (_, i) => ({ iova: r.u64(16 + 16 * i), length: r.u64(24 + 16 * i) }));
  for (const g of ranges) if (g.length === 0n || g.iova + g.length > 1n << 64n) r.fail(`range 0x${g.iova.toString(16)}+0x${g.length.toString(16)} is empty or wraps`);
  return { pageSize: r.u64(0), ranges };
}

export function encodeLoggingStart(s: VfioUserLoggingStart): Uint8Array {
  const w = new PayloadWriter(16 + 16 * s.ranges.length).u64(0, s.pageSize).u32(8, s.ranges.length);
  s.ranges.forEach((g, i) => w.u64(16 + 16 * i, g.iova).u64(24 + 16 * i, g.length));
  return w.bytes;
}

/** DMA_LOGGING_REPORT's request data: the range and the bitmap's page size. */
export interface VfioUserLoggingReport {
  readonly iova: bigint;
  readonly length: bigint;
  readonly pageSize: bigint;
}

/** Bytes of the report's bitmap: one bit per page, in whole u64 words. */
export function reportBitmapBytes(length: bigint, pageSize: bigint): number {
  return Number((((length + pageSize - 1n) / pageSize + 63n) / 64n) * 8n);
}

/**
 * Decode DMA_LOGGING_REPORT: a power-of-two page size, a non-empty non-wrapping range whose
 * bitmap fits the reply the client allows (`argsz`).
 */
export function decodeLoggingReport(data: Uint8Array, argsz: number): VfioUserLoggingReport {
  const r = new PayloadReader(VFIO_USER_DEVICE_FEATURE, data);
  r.need(24, 'the DMA logging report');
  const rep = { iova: r.u64(0), length: r.u64(8), pageSize: r.u64(16) };
  if (rep.pageSize === 0n || (rep.pageSize & (rep.pageSize - 1n)) !== 0n) r.fail(`page size ${rep.pageSize} is not a power of two`);
  if (rep.length === 0n || rep.iova + rep.length > 1n << 64n) r.fail('the report range is empty or wraps');
  if ((rep.length + rep.pageSize - 1n) / rep.pageSize > 1n << 32n) r.fail('the report range needs a bitmap over 512 MiB', 'E2BIG');
  const need = 8 + 24 + reportBitmapBytes(rep.length, rep.pageSize);
  if (argsz < need) r.fail(`argsz ${argsz} is smaller than the report with its bitmap (${need})`, 'E2BIG');
  return rep;
}

export function encodeLoggingReport(rep: VfioUserLoggingReport, bitmap?: Uint8Array): Uint8Array {
  return new PayloadWriter(24 + (bitmap?.byteLength ?? 0)).u64(0, rep.iova).u64(8, rep.length).u64(16, rep.pageSize)
    .set(24, bitmap ?? new Uint8Array(0)).bytes;
}

/** MIG_DATA_READ request: how much to read (≤ `maxSize`), with argsz room for it. */
export function decodeMigDataRead(payload: Uint8Array, fds: readonly number[], maxSize: number): number {
  const r = new PayloadReader(VFIO_USER_MIG_DATA_READ, payload);
  expectFds(VFIO_USER_MIG_DATA_READ, fds, [0], 'a migration read carries none');
  r.exactly(8, 'a migration read request');
  const size = r.u32(4);
  if (size > maxSize) r.fail(`size ${size} exceeds max_data_xfer_size ${maxSize}`, 'E2BIG');
  if (r.u32(0) < 8 + size) r.fail(`argsz ${r.u32(0)} has no room for ${size} bytes`);
  return size;
}

export function encodeMigDataRead(size: number): Uint8Array {
  return new PayloadWriter(8).u32(0, 8 + size).u32(4, size).bytes;
}

/** MIG_DATA_READ reply and MIG_DATA_WRITE request: argsz, size and the bytes. */
export function encodeMigData(data: Uint8Array): Uint8Array {
  return new PayloadWriter(8 + data.byteLength).u32(0, 8 + data.byteLength).u32(4, data.byteLength).set(8, data).bytes;
}

/** Decode a MIG_DATA_WRITE request (or MIG_DATA_READ reply): size matches the data. */
export function decodeMigData(command: number, payload: Uint8Array, fds: readonly number[], maxSize: number): Uint8Array {
  const r = new PayloadReader(command, payload);
  expectFds(command, fds, [0], 'migration data carries none');
  r.need(8, 'argsz and size');
  const size = r.u32(4);
  if (size > maxSize) r.fail(`size ${size} exceeds max_data_xfer_size ${maxSize}`, 'E2BIG');
  r.exactly(8 + size, `${size} bytes of migration data`);
  return r.slice(8, size);
}

/** Whether `command` is MIG_DATA_WRITE (the decoder above serves both directions). */
export const isMigDataWrite = (command: number): boolean => command === VFIO_USER_MIG_DATA_WRITE;
