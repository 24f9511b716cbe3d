// Bounds-checked access to a payload for the command codecs: every read names the command
// and refuses a payload too short for it with a VfioUserProtocolError.

import { VfioUserProtocolError } from './vfio-user-errors.js';

/** A little-endian reader over a payload that fails with the command's name. */
export class PayloadReader {
  readonly dv: DataView;

  constructor(readonly command: number, readonly bytes: Uint8Array) {
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get length(): number {
    return this.bytes.byteLength;
  }

  /** Fail unless the payload has at least `n` bytes (`what` says which part needs them). */
  need(n: number, what: string): void {
    if (this.bytes.byteLength < n) this.fail(`payload of ${this.bytes.byteLength} bytes is too short for ${what} (${n} bytes)`);
  }

  /** Fail unless the payload has exactly `n` bytes. */
  exactly(n: number, what: string): void {
    if (this.bytes.byteLength !== n) this.fail(`payload of ${this.bytes.byteLength} bytes, ${what} takes ${n}`);
  }

  u16(at: number): number {
    return this.dv.getUint16(at, true);
  }

  u32(at: number): number {
    return this.dv.getUint32(at, true);
  }

  u64(at: number): bigint {
    return this.dv.getBigUint64(at, true);
  }

  /** `length` bytes from `at` (a view, not a copy). */
  slice(at: number, length: number): Uint8Array {
    // The reason is built only on failure: this runs for every data-carrying message.
    if (this.bytes.byteLength < at + length) this.need(at + length, `${length} data bytes at ${at}`);
    return this.bytes.subarray(at, at + length);
  }

  fail(reason: string, errno?: 'EINVAL' | 'E2BIG' | 'ENOTSUP'): never {
    throw new VfioUserProtocolError(this.command, reason, errno);
  }
}

/**
 * A little-endian writer over a new payload of `size` bytes. It writes byte by byte: most
 * payloads are small enough to live on V8's heap, and a DataView over one would move it off.
 */
export class PayloadWriter {
  readonly bytes: Uint8Array;

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
  }

  u16(at: number, v: number): this {
    this.bytes[at] = v;
    this.bytes[at + 1] = v >>> 8;
    return this;
  }

  u32(at: number, v: number): this {
    const b = this.bytes;
    b[at] = v;
    b[at + 1] = v >>> 8;
    b[at + 2] = v >>> 16;
    b[at + 3] = v >>> 24;
    return this;
  }

  u64(at: number, v: bigint): this {
    // Through an off-heap 8-byte scratch: exact for every bigint, no bigint arithmetic.
    scratchView.setBigUint64(0, v, true);
    const b = this.bytes;
    for (let i = 0; i < 8; i++) b[at + i] = scratch[i]!;
    return this;
  }

  set(at: number, data: Uint8Array): this {
    this.bytes.set(data, at);
    return this;
  }
}

const scratch = new Uint8Array(new ArrayBuffer(8));
const scratchView = new DataView(scratch.buffer);

/** Fail `command` unless exactly `expected` fds came with it (`what` explains the rule). */
export function expectFds(command: number, fds: readonly number[], allowed: readonly number[], what: string): void {
  if (!allowed.includes(fds.length)) {
    throw new VfioUserProtocolError(command, `${fds.length} file descriptors came with the message, ${what}`);
  }
}
