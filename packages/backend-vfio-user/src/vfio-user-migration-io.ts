// Migration and device dirty tracking over vfio-user (what QEMU's vfio-user client leaves out):
// MIG_DEVICE_STATE through DEVICE_FEATURE, the data transfer session over MIG_DATA_READ /
// MIG_DATA_WRITE instead of a data fd, and DMA logging whose REPORT reply carries the bitmap,
// within the negotiated `migration` capability (pgsize, max_bitmap_size).

import { VfioError, holdsSession, isPrecopyState, sessionContinues, type DmaLoggingRange, type VfioMigDataSession, type VfioMigReadResult } from '@vmmkit/core';
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
  VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MASK, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_STATE_RUNNING,
} from '@vmmkit/core/uapi';
import {
  VFIO_USER_DEVICE_FEATURE, VFIO_USER_MIG_DATA_READ, VFIO_USER_MIG_DATA_WRITE, decodeFeatureReply, decodeMigData,
  encodeFeature, encodeLoggingReport, encodeLoggingStart, encodeMigData, encodeMigDataRead, encodeMigState, reportBitmapBytes,
  type VfioUserMessage,
} from '@vmmkit/core/vfio-user';
import type { VfioUserProxy } from './vfio-user-proxy.js';

/** The device state is not known (a change failed part way): the next session is a new one. */
const UNKNOWN_STATE = -1;

/** How a reply is decoded: a malformed one is the server's fault (EPROTO), its fds closed. */
export type ReplyDecoder = <T>(reply: VfioUserMessage, step: string, decode: () => T) => T;

/** The DMA logging features, which need the negotiated `migration` capability. */
export function isDmaLoggingFeature(flags: number): boolean {
  const feature = flags & VFIO_DEVICE_FEATURE_MASK;
  return feature === VFIO_DEVICE_FEATURE_DMA_LOGGING_START || feature === VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP
    || feature === VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT;
}

/** One device's migration over its proxy; the device I/O delegates to it. */
export class VfioUserMigrationIo {
  #state = VFIO_DEVICE_STATE_RUNNING;
  #session: VfioUserMigDataSession | undefined;

  constructor(private readonly proxy: VfioUserProxy, private readonly decode: ReplyDecoder) {}

  /** The state the device was last put in (UNKNOWN_STATE after a failed change). */
  get state(): number {
    return this.#state;
  }

  /**
   * SET MIG_DEVICE_STATE. There is no data fd: a session starts whenever the change enters a
   * state with one and does not continue the open one (the rule the kernel's arcs follow too).
   */
  async setState(state: number): Promise<VfioMigDataSession | undefined> {
    const from = this.#state;
    this.#state = UNKNOWN_STATE;
    const reply = await this.proxy.request(VFIO_USER_DEVICE_FEATURE, encodeFeature(VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, encodeMigState(state)));
    this.decode(reply, `set the migration state to ${state}`, () => decodeFeatureReply(reply.payload));
    this.#state = state;
    if (sessionContinues(from, state)) return undefined;
    this.#session?.end();
    this.#session = holdsSession(state) ? new VfioUserMigDataSession(this, this.proxy, this.decode) : undefined;
    return this.#session;
  }

  /** The device was reset: RUNNING, and the session (if any) is over. */
  resetDone(): void {
    this.#state = VFIO_DEVICE_STATE_RUNNING;
    this.#session?.end();
    this.#session = undefined;
  }

  /** DMA_LOGGING_START with the range table in the message. */
  async dmaLoggingStart(ranges: readonly DmaLoggingRange[], pageSize: number): Promise<void> {
    this.#loggingCapability('start device DMA logging', pageSize);
    const data = encodeLoggingStart({ pageSize: BigInt(pageSize), ranges });
    const reply = await this.proxy.request(VFIO_USER_DEVICE_FEATURE, encodeFeature(VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START, data));
    this.decode(reply, 'start device DMA logging', () => decodeFeatureReply(reply.payload));
  }

  /** DMA_LOGGING_STOP; nothing to do once the server is gone (a server stops logging for a client that left). */
  async dmaLoggingStop(): Promise<void> {
    if (this.proxy.failure) return;
    this.#capability('stop device DMA logging');
    const reply = await this.proxy.request(VFIO_USER_DEVICE_FEATURE, encodeFeature(VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP));
    this.decode(reply, 'stop device DMA logging', () => decodeFeatureReply(reply.payload));
  }

  /**
   * DMA_LOGGING_REPORT: asked at the server's logging page size when it is coarser than
   * `pageSize` (each of its bits then marks every finer page it covers), in pieces whose bitmap
   * fits max_bitmap_size, each reply's bitmap or'ed into `bitmap`.
   */
  async dmaLoggingReport(iova: bigint, length: bigint, pageSize: number, bitmap: Uint8Array): Promise<void> {
    const step = 'read the device DMA log';
    const cap = this.#loggingCapability(step, pageSize);
    const page = cap.pgsize > BigInt(pageSize) ? cap.pgsize : BigInt(pageSize);
    const ratio = Number(page / BigInt(pageSize));
    // Whole u64 words per piece, so each piece's bits start on a word of the caller's bitmap.
    const piecePages = (cap.maxBitmapSize / 8n) * 64n;
    const pages = (length + page - 1n) / page;
    for (let first = 0n; first < pages; first += piecePages) {
      const start = iova + first * page;
      const pieceLength = (first + piecePages < pages ? piecePages * page : length - first * page);
      const rep = { iova: start, length: pieceLength, pageSize: page };
      const bytes = reportBitmapBytes(pieceLength, page);
      const request = encodeFeature(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, encodeLoggingReport(rep), 8 + 24 + bytes);
      const reply = await this.proxy.request(VFIO_USER_DEVICE_FEATURE, request);
      const piece = this.decode(reply, step, () => {
        const data = decodeFeatureReply(reply.payload);
        if (data.byteLength !== 24 + bytes) throw new VfioError(step, this.proxy.device, { detail: `the reply carries ${data.byteLength - 24} bitmap bytes, not ${bytes}`, errno: 'EPROTO' });
        return data.subarray(24);
      });
      orBits(bitmap, piece, Number(first) * ratio, ratio);
    }
  }

  /** The negotiated capability, or ENOTTY: without it the client does not log DMA over vfio-user. */
  #capability(step: string): { pgsize: bigint; maxBitmapSize: bigint } {
    const cap = this.proxy.capabilities.migration;
    if (!cap) throw new VfioError(step, this.proxy.device, { detail: 'the server did not agree to the migration capability in VERSION', errno: 'ENOTTY' });
    return cap;
  }

  #loggingCapability(step: string, pageSize: number): { pgsize: bigint; maxBitmapSize: bigint } {
    const cap = this.#capability(step);
    if (!Number.isSafeInteger(pageSize) || pageSize <= 0 || (pageSize & (pageSize - 1)) !== 0) {
      throw new VfioError(step, this.proxy.device, { detail: `page size ${pageSize} is not a power of two`, errno: 'EINVAL' });
    }
    return cap;
  }

  /** MIG_DATA_READ reply: 0 bytes means nothing more now (PRE_COPY) or the end (STOP_COPY). */
  emptyRead(): VfioMigReadResult {
    return isPrecopyState(this.#state) ? 'empty' : 'end';
  }
}

/** A data transfer session over MIG_DATA_READ / MIG_DATA_WRITE; it ends with the device's session. */
class VfioUserMigDataSession implements VfioMigDataSession {
  readonly fd = -1;
  #over = false;

  constructor(private readonly migration: VfioUserMigrationIo, private readonly proxy: VfioUserProxy, private readonly decode: ReplyDecoder) {}

  /** MIG_DATA_READ of up to `max` bytes (no more than max_data_xfer_size). */
  async read(max: number): Promise<VfioMigReadResult> {
    this.#live('read the migration data');
    const size = Math.min(max, this.proxy.capabilities.maxDataXferSize);
    const reply = await this.proxy.request(VFIO_USER_MIG_DATA_READ, encodeMigDataRead(size));
    const data = this.decode(reply, 'read the migration data', () => decodeMigData(VFIO_USER_MIG_DATA_READ, reply.payload, reply.fds, size));
    return data.byteLength === 0 ? this.migration.emptyRead() : data;
  }

  /** MIG_DATA_WRITE, in pieces of at most max_data_xfer_size. */
  async write(bytes: Uint8Array): Promise<void> {
    this.#live('write the migration data');
    const max = this.proxy.capabilities.maxDataXferSize;
    for (let done = 0; done < bytes.byteLength; done += max) {
      const reply = await this.proxy.request(VFIO_USER_MIG_DATA_WRITE, encodeMigData(bytes.subarray(done, done + max)));
      this.decode(reply, 'write the migration data', () => undefined);
    }
  }

  /** vfio-user has no VFIO_MIG_GET_PRECOPY_INFO. */
  async precopyInfo(): Promise<undefined> {
    return undefined;
  }

  /** Nothing to release: the stream lives on the device's socket. */
  close(): void {
    this.#over = true;
  }

  /** The device ended the session (a state change or reset). */
  end(): void {
    this.#over = true;
  }

  #live(step: string): void {
    if (this.#over) throw new VfioError(step, this.proxy.device, { detail: 'the data transfer session has ended', errno: 'EBADF' });
  }
}

/**
 * OR `piece` (one bit per coarse page) into `bitmap` (one bit per fine page, `ratio` fine pages
 * per coarse one) from fine bit `at`. With ratio 1 and `at` on a byte, whole bytes at once.
 */
function orBits(bitmap: Uint8Array, piece: Uint8Array, at: number, ratio: number): void {
  if (ratio === 1 && at % 8 === 0) {
    const base = at / 8;
    const n = Math.min(piece.byteLength, bitmap.byteLength - base);
    for (let i = 0; i < n; i++) bitmap[base + i]! |= piece[i]!;
    return;
  }
  const total = bitmap.byteLength * 8;
  for (let byte = 0; byte < piece.byteLength; byte++) {
    const b = piece[byte]!;
    if (b === 0) continue;
    for (let bit = 0; bit < 8; bit++) {
      if (!(b & (1 << bit))) continue;
      const first = at + (byte * 8 + bit) * ratio;
      for (let f = first; f < Math.min(first + ratio, total); f++) bitmap[f >>> 3]! |= 1 << (f & 7);
    }
  }
}
