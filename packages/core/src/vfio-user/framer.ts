// Reassembles whole messages from a byte stream: a header tells the size. The fds that came with
// a chunk belong to the message holding the chunk's last byte: Linux ends a recvmsg right after
// the one skb carrying fds it reads, and a sender passes a message's fds with its own sendmsg.

import { VFIO_USER_HEADER_SIZE } from './constants.js';
import { decodeHeaderAt, type VfioUserLimits, type VfioUserMessage } from './message.js';
import type { VmmError } from '../errors/vmm-error-base.js';
import { VfioUserProtocolError } from './vfio-user-errors.js';

/** What a transport gives `deliverFramed`: whether it is still open, its receiver, its fd closer. */
export interface FramedDelivery {
  open(): boolean;
  deliver(message: VfioUserMessage): void;
  /** Close fds nobody will take (a message completed after the connection closed). */
  discard(fds: readonly number[]): void;
}

/**
 * A transport's receive step, the same over a socket and in process: frame `bytes` (and their
 * fds), hand each whole message on while the connection is open, and discard the fds of those
 * that complete after a receiver closed it. Returns the error that broke the framing (the
 * transport then ends with it), or undefined.
 */
export function deliverFramed(framer: VfioUserFramer, bytes: Uint8Array, fds: readonly number[], to: FramedDelivery): VmmError | undefined {
  let messages: VfioUserMessage[];
  try {
    messages = framer.push(bytes, fds);
  } catch (e) {
    return e as VmmError;
  }
  for (const m of messages) {
    if (to.open()) to.deliver(m);
    else to.discard(m.fds);
  }
  return undefined;
}

/** The fds of a message that came with none (shared: a message's fds are read-only). */
const NO_FDS: readonly number[] = Object.freeze([]);

/**
 * Where message payloads are copied to: slices of a shared off-heap slab rather than an
 * allocation each (per message, that and V8 moving small arrays off its heap when a DataView is
 * made over them cost more than the socket calls). A payload kept alive keeps its slab (64 KiB)
 * alive; payloads over 4 KiB get their own buffer.
 */
class PayloadSlabs {
  static readonly SLAB = 64 * 1024;
  static readonly LARGE = 4096;
  #slab = new ArrayBuffer(PayloadSlabs.SLAB);
  #used = 0;

  /** A copy of `src[from, to)` that the receiver owns (nothing else writes that memory). */
  copy(src: Uint8Array, from: number, to: number): Uint8Array {
    const n = to - from;
    if (n > PayloadSlabs.LARGE) return src.slice(from, to);
    if (this.#used + n > PayloadSlabs.SLAB) {
      this.#slab = new ArrayBuffer(PayloadSlabs.SLAB);
      this.#used = 0;
    }
    const out = new Uint8Array(this.#slab, this.#used, n);
    out.set(src.subarray(from, to));
    // 8-byte aligned, so that a decoder's DataView reads aligned words.
    this.#used += (n + 7) & ~7;
    return out;
  }
}

/** The stream reassembler of one connection. Holds the fds of the message being assembled. */
export class VfioUserFramer {
  /** Bytes of a message not yet complete (whole messages are taken from the chunk as it came). */
  #buffer = new Uint8Array(4096);
  #fill = 0;
  /** Stream position of #buffer[0] (or of the chunk's first byte while #fill is 0). */
  #consumed = 0;
  /** Fd batches not yet given to a message, by the stream position of their chunk's last byte. */
  #batches: { readonly last: number; readonly fds: readonly number[] }[] = [];
  readonly #payloads = new PayloadSlabs();

  constructor(private readonly limits: VfioUserLimits) {}

  /** Fds received for a message not yet complete: the owner closes them when the stream dies. */
  get pendingFds(): readonly number[] {
    return this.#batches.flatMap((b) => b.fds);
  }

  /**
   * Take `bytes` (and the fds that came with them) and return the messages they complete.
   * `bytes` may be reused by the caller afterwards: payloads are copies. Throws
   * VfioUserProtocolError for a bad header or too many fds; the stream is then beyond repair and
   * its pending fds (including these) are the caller's to close.
   */
  push(bytes: Uint8Array, fds: readonly number[]): VfioUserMessage[] {
    if (fds.length) this.#batches.push({ last: this.#consumed + this.#fill + bytes.byteLength - 1, fds: [...fds] });
    if (fds.length > this.limits.maxFds) {
      throw new VfioUserProtocolError('header', `${fds.length} fds came with a message, at most ${this.limits.maxFds} are accepted`);
    }
    // With nothing held back, messages are cut from the chunk itself and only its tail is kept.
    const direct = this.#fill === 0;
    if (!direct) this.#append(bytes);
    const src = direct ? bytes : this.#buffer;
    const end = direct ? bytes.byteLength : this.#fill;
    const out: VfioUserMessage[] = [];
    let at = 0;
    try {
      while (end - at >= VFIO_USER_HEADER_SIZE) {
        const header = decodeHeaderAt(src, at, this.limits);
        if (end - at < header.size) break;
        const payload = this.#payloads.copy(src, at + VFIO_USER_HEADER_SIZE, at + header.size);
        const taken = this.#batches.length ? this.#takeFds(this.#consumed + at + header.size) : NO_FDS;
        out.push({ header, payload, fds: taken });
        if (taken.length > this.limits.maxFds) {
          throw new VfioUserProtocolError('header', `${taken.length} fds came with a message, at most ${this.limits.maxFds} are accepted`);
        }
        at += header.size;
      }
    } catch (e) {
      // The stream is beyond repair: the messages already complete are given back to no one,
      // so their fds join the pending ones for the caller to close.
      for (const m of out) if (m.fds.length) this.#batches.push({ last: -1, fds: m.fds });
      throw e;
    }
    if (direct) {
      if (at < end) this.#append(bytes.subarray(at));
    } else {
      this.#buffer.copyWithin(0, at, this.#fill);
      this.#fill -= at;
    }
    this.#consumed += at;
    return out;
  }

  /** Hand over the fds of the unfinished message (the stream ended); the framer forgets them. */
  takePendingFds(): number[] {
    const fds = this.#batches.flatMap((b) => b.fds);
    this.#batches = [];
    return fds;
  }

  /** The fds of batches whose last byte falls before stream position `end`. */
  #takeFds(end: number): readonly number[] {
    if (this.#batches[0]!.last >= end) return NO_FDS;
    const fds: number[] = [];
    while (this.#batches.length && this.#batches[0]!.last < end) fds.push(...this.#batches.shift()!.fds);
    return fds;
  }

  #append(bytes: Uint8Array): void {
    if (this.#fill + bytes.byteLength > this.#buffer.byteLength) {
      let size = this.#buffer.byteLength;
      while (size < this.#fill + bytes.byteLength) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.#buffer.subarray(0, this.#fill));
      this.#buffer = next;
    }
    this.#buffer.set(bytes, this.#fill);
    this.#fill += bytes.byteLength;
  }
}
