// Memory behind a simulated mapping: one buffer up to 4 GiB, lazily allocated chunks beyond
// (so a 1 TiB MAP_NORESERVE guest costs nothing until written).

import { ArgumentError, MAX_VIEW_LENGTH } from '@vmmkit/core';

/** Bytes that user mappings, IO page tables and devices can point into. */
export interface MemoryBacking {
  readonly length: number;
  /** A live view of `[offset, offset + length)`; throws if it would span two backing chunks. */
  view(offset: number, length: number): Uint8Array;
  /** Copy bytes out (any span; untouched chunks read as zero). */
  read(offset: number, into: Uint8Array): void;
  /** Copy bytes in (any span). */
  write(offset: number, from: Uint8Array): void;
}

function checkSpan(backing: MemoryBacking, offset: number, length: number): void {
  if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > backing.length) {
    throw new ArgumentError(`span [${offset}, +${length}) is outside ${backing.length} bytes of memory`);
  }
}

/** One ArrayBuffer (zero-filled lazily by the allocator). */
export class DenseBacking implements MemoryBacking {
  readonly #bytes: Uint8Array;

  constructor(readonly length: number) {
    if (length > MAX_VIEW_LENGTH) throw new ArgumentError(`dense backing of ${length} bytes exceeds 4 GiB`);
    this.#bytes = new Uint8Array(length);
  }

  view(offset: number, length: number): Uint8Array {
    checkSpan(this, offset, length);
    return this.#bytes.subarray(offset, offset + length);
  }

  read(offset: number, into: Uint8Array): void {
    checkSpan(this, offset, into.byteLength);
    into.set(this.#bytes.subarray(offset, offset + into.byteLength));
  }

  write(offset: number, from: Uint8Array): void {
    checkSpan(this, offset, from.byteLength);
    this.#bytes.set(from, offset);
  }
}

/** Memory the caller already has (HostKernel.mapMemory): the backing is the same bytes. */
export class ViewBacking implements MemoryBacking {
  readonly length: number;

  constructor(private readonly bytes: Uint8Array) {
    this.length = bytes.byteLength;
  }

  view(offset: number, length: number): Uint8Array {
    checkSpan(this, offset, length);
    return this.bytes.subarray(offset, offset + length);
  }

  read(offset: number, into: Uint8Array): void {
    checkSpan(this, offset, into.byteLength);
    into.set(this.bytes.subarray(offset, offset + into.byteLength));
  }

  write(offset: number, from: Uint8Array): void {
    checkSpan(this, offset, from.byteLength);
    this.bytes.set(from, offset);
  }
}

/** Chunks of 1 GiB, allocated on first write or view. */
export class ChunkedBacking implements MemoryBacking {
  static readonly CHUNK = 1 << 30;
  readonly #chunks = new Map<number, Uint8Array>();

  constructor(readonly length: number) {}

  view(offset: number, length: number): Uint8Array {
    checkSpan(this, offset, length);
    const index = Math.floor(offset / ChunkedBacking.CHUNK);
    const start = offset - index * ChunkedBacking.CHUNK;
    if (start + length > ChunkedBacking.CHUNK) {
      throw new ArgumentError(
        `sim: a view of [${offset}, +${length}) crosses a 1 GiB backing chunk of a mapping larger than 4 GiB; take smaller windows`,
      );
    }
    return this.#chunk(index, true)!.subarray(start, start + length);
  }

  read(offset: number, into: Uint8Array): void {
    checkSpan(this, offset, into.byteLength);
    this.#spans(offset, into.byteLength, (index, start, done, n) => {
      const chunk = this.#chunk(index, false);
      if (chunk) into.set(chunk.subarray(start, start + n), done);
      else into.fill(0, done, done + n);
    });
  }

  write(offset: number, from: Uint8Array): void {
    checkSpan(this, offset, from.byteLength);
    this.#spans(offset, from.byteLength, (index, start, done, n) => {
      this.#chunk(index, true)!.set(from.subarray(done, done + n), start);
    });
  }

  /** How many chunks hold memory: for tests of laziness. */
  get allocatedChunks(): number {
    return this.#chunks.size;
  }

  #chunk(index: number, allocate: boolean): Uint8Array | undefined {
    let chunk = this.#chunks.get(index);
    if (!chunk && allocate) {
      const size = Math.min(ChunkedBacking.CHUNK, this.length - index * ChunkedBacking.CHUNK);
      chunk = new Uint8Array(size);
      this.#chunks.set(index, chunk);
    }
    return chunk;
  }

  #spans(offset: number, length: number, fn: (index: number, start: number, done: number, n: number) => void): void {
    let done = 0;
    while (done < length) {
      const at = offset + done;
      const index = Math.floor(at / ChunkedBacking.CHUNK);
      const start = at - index * ChunkedBacking.CHUNK;
      const n = Math.min(length - done, ChunkedBacking.CHUNK - start);
      fn(index, start, done, n);
      done += n;
    }
  }
}

/** The backing for a new anonymous mapping of `length` bytes: whole pages, as the kernel maps them. */
export function anonymousBacking(length: number): MemoryBacking {
  const pages = Math.ceil(length / 4096) * 4096;
  return pages <= MAX_VIEW_LENGTH ? new DenseBacking(pages) : new ChunkedBacking(pages);
}

/**
 * A mapping the real kernel made (HostKernel.mmap of LinuxHost), adopted by the simulated
 * kernel: reads and writes go to the very same bytes, through windows of at most 4 GiB.
 */
export class MappingBacking implements MemoryBacking {
  readonly length: number;

  constructor(private readonly mapping: { readonly length: number; view(offset: number, length: number): Uint8Array }) {
    this.length = mapping.length;
  }

  view(offset: number, length: number): Uint8Array {
    checkSpan(this, offset, length);
    return this.mapping.view(offset, length);
  }

  read(offset: number, into: Uint8Array): void {
    checkSpan(this, offset, into.byteLength);
    into.set(this.mapping.view(offset, into.byteLength));
  }

  write(offset: number, from: Uint8Array): void {
    checkSpan(this, offset, from.byteLength);
    this.mapping.view(offset, from.byteLength).set(from);
  }
}
