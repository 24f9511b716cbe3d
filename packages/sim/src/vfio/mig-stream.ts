// The migration data stream of simulated devices: a sequence of self-describing records, each
// a full device state. The saving side queues records and hands out bytes; the resuming side
// reassembles records from writes of any segmentation and keeps the newest complete one.

import { fail } from '../kernel/sim-errno.js';

const MAGIC = 0x4d49_5356; // "VSIM"
const FORMAT = 1;
/** Bytes of the record header: magic, format, flags, payload length, reserved, model kind. */
export const MIG_RECORD_HEADER = 32;
const KIND_AT = 16;
const KIND_LENGTH = 16;
/** Largest payload accepted on resume (a sanity bound, far above any model's state). */
const MAX_PAYLOAD = 64 << 20;

/** What a record carries: the initial state, a state that changed since, or the final state. */
export const MIG_RECORD_INITIAL = 0x1;
export const MIG_RECORD_DIRTY = 0x2;
export const MIG_RECORD_FINAL = 0x4;

/** A record of `payload` (a model's saved state) for a model of kind `kind`. */
export function encodeRecord(kind: string, flags: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(MIG_RECORD_HEADER + payload.byteLength);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MAGIC, true);
  dv.setUint16(4, FORMAT, true);
  dv.setUint16(6, flags, true);
  dv.setUint32(8, payload.byteLength, true);
  out.set(new TextEncoder().encode(kind).subarray(0, KIND_LENGTH), KIND_AT);
  out.set(payload, MIG_RECORD_HEADER);
  return out;
}

/** Bytes waiting to be read from a saving data fd, record after record. */
export class SaveQueue {
  readonly #chunks: Uint8Array[] = [];
  #first = 0; // bytes of #chunks[0] already read

  get length(): number {
    return this.#chunks.reduce((n, c) => n + c.byteLength, 0) - this.#first;
  }

  push(record: Uint8Array): void {
    this.#chunks.push(record);
  }

  /** Copy up to buf.byteLength bytes out; returns how many. */
  take(buf: Uint8Array): number {
    let done = 0;
    while (done < buf.byteLength && this.#chunks.length) {
      const chunk = this.#chunks[0]!;
      const n = Math.min(buf.byteLength - done, chunk.byteLength - this.#first);
      buf.set(chunk.subarray(this.#first, this.#first + n), done);
      done += n;
      this.#first += n;
      if (this.#first === chunk.byteLength) {
        this.#chunks.shift();
        this.#first = 0;
      }
    }
    return done;
  }
}

/** Reassembles records written to a resuming data fd. */
export class ResumeAssembler {
  readonly #header = new Uint8Array(MIG_RECORD_HEADER);
  #headerFill = 0;
  #payload: Uint8Array | undefined;
  #payloadFill = 0;
  #last: Uint8Array | undefined;

  constructor(private readonly kind: string) {}

  /** Take written bytes; EINVAL when a record header is not one this device can load. */
  write(data: Uint8Array): void {
    let at = 0;
    while (at < data.byteLength) {
      if (!this.#payload) {
        const n = Math.min(MIG_RECORD_HEADER - this.#headerFill, data.byteLength - at);
        this.#header.set(data.subarray(at, at + n), this.#headerFill);
        this.#headerFill += n;
        at += n;
        if (this.#headerFill === MIG_RECORD_HEADER) this.#payload = new Uint8Array(this.#check());
        if (this.#payload?.byteLength !== 0) continue;
      } else {
        const n = Math.min(this.#payload.byteLength - this.#payloadFill, data.byteLength - at);
        this.#payload.set(data.subarray(at, at + n), this.#payloadFill);
        this.#payloadFill += n;
        at += n;
      }
      if (this.#payload && this.#payloadFill === this.#payload.byteLength) this.#completeRecord();
    }
  }

  /** The newest complete state; EINVAL when the stream ended inside a record or held none. */
  finish(): Uint8Array {
    if (this.#headerFill !== 0 || this.#payload) fail('EINVAL', 'the migration stream ends inside a record');
    if (!this.#last) fail('EINVAL', 'the migration stream holds no device state');
    return this.#last;
  }

  #completeRecord(): void {
    this.#last = this.#payload;
    this.#payload = undefined;
    this.#payloadFill = 0;
    this.#headerFill = 0;
  }

  /** Validate the header just assembled; returns the payload length. */
  #check(): number {
    const dv = new DataView(this.#header.buffer);
    if (dv.getUint32(0, true) !== MAGIC || dv.getUint16(4, true) !== FORMAT) fail('EINVAL', 'not a simulated-device migration record');
    if (dv.getUint32(12, true) !== 0) fail('EINVAL', 'reserved header field is not zero');
    const kind = new TextDecoder().decode(this.#header.subarray(KIND_AT, KIND_AT + KIND_LENGTH)).replace(/\0+$/, '');
    if (kind !== this.kind) fail('EINVAL', `migration record of a '${kind}' device, this is a '${this.kind}'`);
    const length = dv.getUint32(8, true);
    if (length > MAX_PAYLOAD) fail('EINVAL', `migration record of ${length} bytes is too large`);
    return length;
  }
}
