// The checksums of a migration stream (format version 2): the pass CRC-32 (zlib's, native) over
// every byte of a pass but its page data, and the page digests of RAM_PAGES, computed by one
// PageDigest per thread.

import { crc32 } from 'node:zlib';
import { PageDigest } from '@vmmkit/core';
import { concat } from './received-record.js';
import { STREAM_PAGE_SIZE } from './records.js';

let shared: PageDigest | undefined;

/** The thread's PageDigest (computing is synchronous, so readers and writers share it). */
function digester(): PageDigest {
  return (shared ??= new PageDigest());
}

/** The running CRC-32 of a pass: `update` with each byte range in stream order. */
export class PassChecksum {
  #crc = 0;

  get value(): number {
    return this.#crc;
  }

  update(bytes: Uint8Array): void {
    if (bytes.byteLength > 0) this.#crc = crc32(bytes, this.#crc);
  }

  /** The pass ended: the next one starts from zero. */
  reset(): void {
    this.#crc = 0;
  }
}

/**
 * The digests of the pages in `parts` (whole pages in all, in order) into `out[0..]`. Parts that
 * split a page are joined first (the RAM path sends one view, and a socket reader receives one in
 * place; only chunks of an in-process pair split pages).
 */
export function digestPages(parts: readonly Uint8Array[], out: Uint32Array): void {
  if (!parts.every((p) => p.byteLength % STREAM_PAGE_SIZE === 0)) parts = [concat(parts)];
  let page = 0;
  for (const p of parts) {
    digester().compute(p, out, page);
    page += p.byteLength / STREAM_PAGE_SIZE;
  }
}
