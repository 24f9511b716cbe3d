// DirtyBitmap: one bit per page, in the kernel's layout (little-endian u64 words), with the bulk
// operations of the migration hot path on WebAssembly SIMD. Each bitmap owns a second area of
// the same layout, `incoming`, where kernels (IOMMU, type1, device logs) write their reports,
// so that merging never copies.

import { ArgumentError } from '../errors/vmm-error-base.js';
import { BLOCK, createBitmapMemory, popcount32, simdAvailable, type BitmapKernels } from './dirty-bitmap-kernels.js';

/** Set-bit numbers per batch of {@link DirtyBitmap.forEachSetBit}: 16 KiB, which stays in L1. */
const COLLECT_BATCH = 4096;

export interface DirtyBitmapOptions {
  /** Use the plain JS kernels even where WebAssembly SIMD exists (tests, comparisons). */
  readonly forceJs?: boolean;
}

/** A bitmap of `pages` bits over little-endian u64 words. */
export class DirtyBitmap {
  /** Number of pages (bits). */
  readonly pages: number;
  /** The bitmap's bytes in the kernel's layout: ceil(pages / 64) u64 words. */
  readonly bytes: Uint8Array;
  /**
   * Where a kernel report goes before `mergeIncoming()`: same layout and length as `bytes`.
   * Kernels only OR bits in, so it is kept zero between merges.
   */
  readonly incoming: Uint8Array;
  readonly #kernels: BitmapKernels;
  readonly #words: Uint32Array;
  readonly #padded: number;
  /** Where the set-bit batches go (after both bitmaps) and the resume cell before them. */
  readonly #cell: Uint32Array;
  readonly #batch: Uint32Array;

  constructor(pages: number, options: DirtyBitmapOptions = {}) {
    if (!Number.isSafeInteger(pages) || pages < 0) throw new ArgumentError(`DirtyBitmap: pages must be a non-negative integer, got ${pages}`);
    this.pages = pages;
    const kernelBytes = Math.ceil(pages / 64) * 8;
    this.#padded = Math.ceil(kernelBytes / BLOCK) * BLOCK;
    const { buffer, kernels } = createBitmapMemory(2 * this.#padded + BLOCK + 4 * COLLECT_BATCH, options.forceJs);
    this.#kernels = kernels;
    this.bytes = new Uint8Array(buffer, 0, kernelBytes);
    this.incoming = new Uint8Array(buffer, this.#padded, kernelBytes);
    this.#words = new Uint32Array(buffer, 0, this.#padded / 4);
    this.#cell = new Uint32Array(buffer, 2 * this.#padded, 1);
    this.#batch = new Uint32Array(buffer, 2 * this.#padded + BLOCK, COLLECT_BATCH);
  }

  /** Whether bitmaps use WebAssembly SIMD on this engine. */
  static get simd(): boolean {
    return simdAvailable();
  }

  /** Size in bytes of the kernel-layout bitmap for `pages` pages. */
  static byteLength(pages: number): number {
    return Math.ceil(pages / 64) * 8;
  }

  /**
   * The part of `incoming` a kernel report of the first `pages` pages writes: whole u64 words, as
   * the IOMMU, type1 and device DMA logs all size their bitmaps.
   * @throws ArgumentError for more pages than the bitmap has.
   */
  incomingFor(pages: number): Uint8Array {
    if (!Number.isSafeInteger(pages) || pages < 0 || pages > this.pages) throw new ArgumentError(`DirtyBitmap: a report of ${pages} pages into ${this.pages}`, 'pages');
    return this.incoming.subarray(0, DirtyBitmap.byteLength(pages));
  }

  /** OR `incoming` into the bitmap and zero it; returns the number of newly set bits. */
  mergeIncoming(): number {
    const newly = this.#kernels.merge(0, this.#padded, this.#padded, true);
    return newly - this.#clearTail();
  }

  /** OR another bitmap of the same size in (optionally zeroing it); returns newly set bits. */
  merge(other: DirtyBitmap, options: { clearSource?: boolean } = {}): number {
    this.#sameSize(other);
    this.incoming.set(other.bytes);
    if (options.clearSource) other.clear();
    return this.mergeIncoming();
  }

  test(bit: number): boolean {
    this.#check(bit, 1);
    return (this.#words[bit >>> 5]! & (1 << (bit & 31))) !== 0;
  }

  set(bit: number): void {
    this.setRange(bit, 1);
  }

  /** Set bits [start, start + count); returns how many were not set before. */
  setRange(start: number, count: number): number {
    let already = 0;
    const words = this.#words;
    this.#range(start, count, (w, mask) => {
      already += popcount32(words[w]! & mask);
      words[w] = (words[w]! | mask) >>> 0;
    }, 0xff, (from, to) => (already += this.#countWords(from, to)));
    return count - already;
  }

  /** Clear bits [start, start + count). */
  clearRange(start: number, count: number): void {
    this.#range(start, count, (w, mask) => (this.#words[w] = (this.#words[w]! & ~mask) >>> 0), 0);
  }

  /** Set every bit. */
  fill(): void {
    this.setRange(0, this.pages);
  }

  clear(): void {
    this.bytes.fill(0);
  }

  /** Number of set bits. */
  count(): number {
    return this.#kernels.popcount(0, this.#padded);
  }

  /** The first set bit at or after `from`, or -1. */
  nextSetBit(from: number): number {
    if (from >= this.pages) return -1;
    let wordIndex = from >>> 5;
    let word = this.#words[wordIndex]! & (~0 << (from & 31));
    for (;;) {
      if (word !== 0) {
        const bit = wordIndex * 32 + (31 - Math.clz32(word & -word));
        return bit < this.pages ? bit : -1;
      }
      wordIndex++;
      if ((wordIndex * 4) % BLOCK === 0) {
        // At a block boundary: let the SIMD kernel skip runs of empty blocks.
        const at = this.#kernels.nextNonZero(0, wordIndex * 4, this.#padded);
        if (at >= this.#padded) return -1;
        wordIndex = at / 4;
      }
      if (wordIndex * 32 >= this.pages) return -1;
      word = this.#words[wordIndex]!;
    }
  }

  /** Call `fn(start, length)` for each run of consecutive set bits, in order. */
  forEachRun(fn: (start: number, length: number) => void): void {
    let bit = this.nextSetBit(0);
    while (bit >= 0) {
      let end = bit + 1;
      // Extend over whole set words quickly, then bit by bit.
      while (end < this.pages && (end & 31) !== 0 && this.#bitAt(end)) end++;
      while (end + 32 <= this.pages && this.#words[end >>> 5] === 0xffffffff) end += 32;
      while (end < this.pages && this.#bitAt(end)) end++;
      fn(bit, end - bit);
      bit = this.nextSetBit(end);
    }
  }

  /**
   * Call `fn(bit)` for each set bit, in order. The bits are collected a batch at a time by a ctz
   * loop (WebAssembly where available), so `fn` must not change the bitmap.
   */
  forEachSetBit(fn: (bit: number) => void): void {
    this.forEachSetBitBatch((bits, count) => {
      for (let i = 0; i < count; i++) fn(bits[i]!);
    });
  }

  /**
   * Call `fn(bits, count)` with the set bits in order, a batch at a time: `bits[0..count)` are
   * bit numbers (ascending; `count` > 0). The hot-path form of {@link forEachSetBit}: the caller's
   * loop over a typed array replaces a call per bit. `bits` is reused for the next batch and `fn`
   * must not change the bitmap.
   */
  forEachSetBitBatch(fn: (bits: Uint32Array, count: number) => void): void {
    const batch = this.#batch;
    const out = batch.byteOffset;
    const cell = this.#cell.byteOffset;
    for (let from = 0; from < this.pages; from = this.#cell[0]!) {
      const n = this.#kernels.collect(0, from, this.#padded, out, COLLECT_BATCH, cell);
      if (n > 0) fn(batch, n);
    }
  }

  #bitAt(bit: number): boolean {
    return (this.#words[bit >>> 5]! & (1 << (bit & 31))) !== 0;
  }

  /** Set bits in words [from, to): the kernel counts the whole 64-byte blocks, JS the words around them. */
  #countWords(from: number, to: number): number {
    const words = this.#words;
    const perBlock = BLOCK / 4;
    const blockFrom = Math.min(Math.ceil(from / perBlock) * perBlock, to);
    const blockTo = Math.max(Math.floor(to / perBlock) * perBlock, blockFrom);
    let n = blockTo > blockFrom ? this.#kernels.popcount(blockFrom * 4, (blockTo - blockFrom) * 4) : 0;
    for (let w = from; w < blockFrom; w++) n += popcount32(words[w]!);
    for (let w = blockTo; w < to; w++) n += popcount32(words[w]!);
    return n;
  }

  /** Drop bits past `pages` that a report may have carried in; returns how many were set. */
  #clearTail(): number {
    const tail = this.#padded * 8 - this.pages;
    if (tail === 0) return 0;
    let dropped = 0;
    for (let bit = this.pages; bit < this.#padded * 8; bit++) {
      if (this.#bitAt(bit)) {
        dropped++;
        this.#words[bit >>> 5] = (this.#words[bit >>> 5]! & ~(1 << (bit & 31))) >>> 0;
      }
      if ((bit & 31) === 31 && this.#words[(bit + 1) >>> 5] === 0) bit = (((bit + 1) >>> 5) + 1) * 32 - 1;
    }
    return dropped;
  }

  /** Apply `apply` to the partial words at the edges and fill the whole words between (`before` sees them first). */
  #range(start: number, count: number, apply: (word: number, mask: number) => void, fillByte: number, before?: (from: number, to: number) => void): void {
    this.#check(start, count);
    let bit = start;
    const end = start + count;
    while (bit < end && (bit & 31) !== 0) {
      const n = Math.min(32 - (bit & 31), end - bit);
      apply(bit >>> 5, (n === 32 ? 0xffffffff : ((1 << n) - 1) << (bit & 31)) >>> 0);
      bit += n;
    }
    const fullEnd = end - (end & 31);
    if (bit < fullEnd) {
      before?.(bit >>> 5, fullEnd >>> 5);
      this.#words.fill(fillByte === 0 ? 0 : 0xffffffff, bit >>> 5, fullEnd >>> 5);
      bit = fullEnd;
    }
    if (bit < end) apply(bit >>> 5, ((1 << (end - bit)) - 1) >>> 0);
  }

  #check(start: number, count: number): void {
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0 || start + count > this.pages) {
      throw new ArgumentError(`DirtyBitmap: bits [${start}, +${count}) outside ${this.pages} pages`);
    }
  }

  #sameSize(other: DirtyBitmap): void {
    if (other.pages !== this.pages) throw new ArgumentError(`DirtyBitmap: merging ${other.pages} pages into ${this.pages}`);
  }
}
