// A bitmap over a huge index space that only stores the chunks in use: IOPTE dirty bits of an
// IO page table (per IO page), a device's DMA log. Ranges are set and read a word at a time.

import { InvariantError } from '@vmmkit/core';

const CHUNK_BITS = 1 << 18; // 32 KiB of bits: 1 GiB of IOVA at 4 KiB pages
const WORDS = CHUNK_BITS / 32;

/** Sparse bit set over non-negative integer indices (below 2^53). */
export class SparseBitmap {
  readonly #chunks = new Map<number, Uint32Array>();

  /** Set bits [first, first + count). */
  setRange(first: number, count: number): void {
    this.#walk(first, count, true, (words, lo, hi) => setBits(words, lo, hi));
  }

  /** Clear bits [first, first + count). */
  clearRange(first: number, count: number): void {
    this.#walk(first, count, false, (words, lo, hi) => clearBits(words, lo, hi));
    this.#dropEmpty();
  }

  test(bit: number): boolean {
    const words = this.#chunks.get(Math.floor(bit / CHUNK_BITS));
    if (!words) return false;
    const i = bit % CHUNK_BITS;
    return (words[i >>> 5]! & (1 << (i & 31))) !== 0;
  }

  /** Number of set bits in [first, first + count). */
  count(first: number, count: number): number {
    let n = 0;
    this.forEachRun(first, count, (_, len) => {
      n += len;
    });
    return n;
  }

  /** Call `fn(start, length)` for each run of consecutive set bits within [first, first + count). */
  forEachRun(first: number, count: number, fn: (start: number, length: number) => void): void {
    let runStart = -1;
    let runEnd = -1;
    const flush = (): void => {
      if (runStart >= 0) fn(runStart, runEnd - runStart);
      runStart = -1;
    };
    const end = first + count;
    const keys = [...this.#chunks.keys()].sort((a, b) => a - b);
    for (const key of keys) {
      const base = key * CHUNK_BITS;
      if (base + CHUNK_BITS <= first || base >= end) continue;
      const words = this.#chunks.get(key)!;
      const lo = Math.max(first, base) - base;
      const hi = Math.min(end, base + CHUNK_BITS) - base;
      for (let w = lo >>> 5; w <= (hi - 1) >>> 5; w++) {
        let word = words[w]!;
        if (word === 0) continue;
        const wordBase = w * 32;
        if (word === 0xffffffff && wordBase >= lo && wordBase + 32 <= hi) {
          // A full word inside the window: extend the run by 32 at once.
          const bit = base + wordBase;
          if (bit === runEnd) runEnd += 32;
          else {
            flush();
            runStart = bit;
            runEnd = bit + 32;
          }
          continue;
        }
        for (let b = 0; b < 32; b++) {
          if (!(word & (1 << b))) continue;
          const i = wordBase + b;
          if (i < lo || i >= hi) continue;
          const bit = base + i;
          if (bit === runEnd) runEnd++;
          else {
            flush();
            runStart = bit;
            runEnd = bit + 1;
          }
          word &= ~(1 << b);
          if (word === 0) break;
        }
      }
    }
    flush();
  }

  /** True when no bit is set. */
  get empty(): boolean {
    return this.#chunks.size === 0;
  }

  clear(): void {
    this.#chunks.clear();
  }

  #walk(first: number, count: number, allocate: boolean, fn: (words: Uint32Array, lo: number, hi: number) => void): void {
    if (count <= 0) return;
    const end = first + count;
    for (let key = Math.floor(first / CHUNK_BITS); key * CHUNK_BITS < end; key++) {
      let words = this.#chunks.get(key);
      if (!words) {
        if (!allocate) continue;
        words = new Uint32Array(WORDS);
        this.#chunks.set(key, words);
      }
      const base = key * CHUNK_BITS;
      fn(words, Math.max(first, base) - base, Math.min(end, base + CHUNK_BITS) - base);
    }
  }

  #dropEmpty(): void {
    for (const [key, words] of this.#chunks) if (words.every((w) => w === 0)) this.#chunks.delete(key);
  }
}

/** Set bits [lo, hi) of a little-endian word array. */
function setBits(words: Uint32Array, lo: number, hi: number): void {
  for (let i = lo; i < hi; ) {
    const w = i >>> 5;
    const b = i & 31;
    const n = Math.min(32 - b, hi - i);
    words[w] = words[w]! | (n === 32 ? 0xffffffff : ((2 ** n - 1) << b) >>> 0);
    i += n;
  }
}

/** Clear bits [lo, hi) of a little-endian word array. */
function clearBits(words: Uint32Array, lo: number, hi: number): void {
  for (let i = lo; i < hi; ) {
    const w = i >>> 5;
    const b = i & 31;
    const n = Math.min(32 - b, hi - i);
    words[w] = words[w]! & ~(n === 32 ? 0xffffffff : ((2 ** n - 1) << b) >>> 0);
    i += n;
  }
}

/**
 * OR bits [bit, bit + count) into a little-endian bitmap held in byte views (the user's buffer,
 * possibly split across backings). Byte-wise, so any alignment of the user's buffer works.
 */
export function setUserBits(spans: readonly Uint8Array[], bit: number, count: number): void {
  let i = bit;
  const end = bit + count;
  let spanIndex = 0;
  let spanBase = 0; // byte index where spans[spanIndex] starts
  while (i < end) {
    const byte = Math.floor(i / 8);
    while (spanIndex < spans.length && byte >= spanBase + spans[spanIndex]!.byteLength) {
      spanBase += spans[spanIndex]!.byteLength;
      spanIndex++;
    }
    const view = spans[spanIndex];
    if (!view) throw new InvariantError('dirty bit beyond the user bitmap');
    const b = i & 7;
    if (b === 0 && end - i >= 8) {
      // Whole bytes: fill the run inside this span at once.
      const fullBytes = Math.min(Math.floor((end - i) / 8), spanBase + view.byteLength - byte);
      view.fill(0xff, byte - spanBase, byte - spanBase + fullBytes);
      i += fullBytes * 8;
      continue;
    }
    const n = Math.min(8 - b, end - i);
    view[byte - spanBase] = view[byte - spanBase]! | (((1 << n) - 1) << b);
    i += n;
  }
}
