// Set-bit iteration in bulk: a WebAssembly kernel that writes the numbers of the set bits of a
// bitmap into an output array with count-trailing-zeros over u64 words, "flattened" (numbers
// written in fixed groups whatever the word's count, the cursor advanced by its popcount, so a
// word costs no unpredictable branch on its bits), skipping empty 64-byte blocks a vector at a
// time; and the plain JS loop of identical results. DirtyBitmap hands the caller whole batches,
// so the per-bit work is one ctz and one store, as in C, with fewer mispredicted branches than C's
// `while (w)` loop: the caller's JS loop over the batch needs that margin.

import { I32, I64, op, V128, type WasmFunction } from './wasm-module.js';

/** Most bits one word contributes: a batch stops early rather than split a word. */
const WORD_BITS = 64;

// collect(ptr, from, end, out, max, cell) -> count; P is the output cursor, LIMIT the last
// place a whole word's bits still fit.
const [PTR, FROM, END, OUT, MAX, CELL] = [0, 1, 2, 3, 4, 5];
// COUNT: the set bits of the last word (0 before the first).
const [I, W, P, BASE, RESUME, LIMIT, RUN, COUNT, Q] = [6, 7, 8, 9, 10, 11, 12, 13, 14];
/**
 * Bit numbers written for every word, set or not, before the first branch on its count: few, so
 * that sparse bitmaps (most words empty or with one bit) waste little on empty words.
 */
const EAGER = 2;
/** The numbers written for a word with more than EAGER bits before the next branch, and per group after. */
const FLAT = 8;
const IOTA = [0, 1, 2, 3];

/** Push (ptr + i). */
const at = [...op.localGet(PTR), ...op.localGet(I), ...op.i32Add];

/**
 * Write the numbers of the next `n` lowest set bits of W at P + 4 * first, clearing them from W.
 * Past the word's count the numbers are garbage (ctz of 0 is 64) that the next word overwrites;
 * at most 2 * FLAT are written before the count is known, within the WORD_BITS a word may use.
 */
const flatten = (first: number, n: number) => Array.from({ length: n }, (_, k) => [
  ...op.localGet(P), ...op.localGet(BASE), ...op.localGet(W), ...op.i64Ctz, ...op.i32WrapI64, ...op.i32Add, ...op.i32Store(4 * (first + k)),
  ...op.localGet(W), ...op.localGet(W), ...op.i64Const(1), ...op.i64Sub, ...op.i64And, ...op.localSet(W),
]).flat();

/** `resume = value; br $done` (depth given from the use site). */
const stop = (value: readonly number[], depth: number) => [...value, ...op.localSet(RESUME), ...op.br(depth)];

/**
 * collect(ptr, from, end, out, max, cell): the numbers of the set bits at or after bit `from` of
 * the bitmap of `end` bytes (a multiple of 64) at `ptr`, as u32 at `out`, at most `max` of them
 * (`max` >= 64; a batch ends before a word that would not fit). Returns how many; stores at
 * `cell` the bit to resume from (end * 8 when the bitmap is done).
 */
export const collect: WasmFunction = {
  name: 'collect',
  params: [I32, I32, I32, I32, I32, I32],
  results: [I32],
  locals: [I32, I64, I32, I32, I32, I32, V128, I32, I32],
  body: [
    ...op.localGet(OUT), ...op.localSet(P),
    ...op.localGet(OUT), ...op.localGet(MAX), ...op.i32Const(WORD_BITS), ...op.i32Sub, ...op.i32Const(2), ...op.i32Shl, ...op.i32Add, ...op.localSet(LIMIT),
    // i = byte offset of from's word; w = that word without the bits below from.
    ...op.localGet(FROM), ...op.i32Const(6), ...op.i32ShrU, ...op.i32Const(3), ...op.i32Shl, ...op.localSet(I),
    ...op.localGet(END), ...op.i32Const(3), ...op.i32Shl, ...op.localSet(RESUME),
    ...op.block, // $done
    ...op.localGet(I), ...op.localGet(END), ...op.i32GeU, ...op.brIf(0),
    ...at, ...op.i64Load(0),
    ...op.i64Const(-1), ...op.localGet(FROM), ...op.i32Const(63), ...op.i32And, ...op.i64ExtendI32U, ...op.i64Shl,
    ...op.i64And, ...op.localSet(W),
    ...op.loop, // $words
    // Stop before a word whose bits might not fit (resuming at its first bit, or the next word).
    ...op.localGet(P), ...op.localGet(LIMIT), ...op.i32GtU, ...op.if,
    ...stop([...op.localGet(I), ...op.i32Const(3), ...op.i32Shl, ...op.localGet(W), ...op.i64Ctz, ...op.i32WrapI64, ...op.i32Add], 2),
    ...op.end,
    ...op.localGet(I), ...op.i32Const(3), ...op.i32Shl, ...op.localSet(BASE),
    // A word of 64 set bits (dirty pages come in runs): its numbers four at a time.
    ...op.localGet(W), ...op.i64Const(-1), ...op.i64Eq, ...op.if,
    ...op.localGet(BASE), ...op.i32x4Splat, ...op.v128ConstI32x4(IOTA), ...op.i32x4Add, ...op.localSet(RUN),
    ...Array.from({ length: WORD_BITS / 4 }, (_, k) => [
      ...op.localGet(P), ...op.localGet(RUN), ...op.v128Store(16 * k),
      ...op.localGet(RUN), ...op.v128ConstI32x4([4, 4, 4, 4]), ...op.i32x4Add, ...op.localSet(RUN),
    ]).flat(),
    ...op.localGet(P), ...op.i32Const(4 * WORD_BITS), ...op.i32Add, ...op.localSet(P),
    ...op.i32Const(WORD_BITS), ...op.localSet(COUNT),
    ...op.else,
    // Any other word, zero included, flattened (as simdjson's flatten_bits): the first FLAT numbers
    // are written whatever the count, so a typical word costs no branch on its bits (numbers
    // past the count are garbage the next word overwrites); a second group of FLAT covers the
    // common tail, and only words with more bits than that loop.
    ...op.localGet(W), ...op.i64Popcnt, ...op.i32WrapI64, ...op.localSet(COUNT),
    ...flatten(0, EAGER),
    ...op.localGet(COUNT), ...op.i32Const(EAGER), ...op.i32GtU, ...op.if,
    ...flatten(EAGER, FLAT - EAGER),
    ...op.localGet(COUNT), ...op.i32Const(FLAT), ...op.i32GtU, ...op.if,
    ...flatten(FLAT, FLAT),
    ...op.localGet(COUNT), ...op.i32Const(2 * FLAT), ...op.i32GtU, ...op.if,
    ...op.localGet(P), ...op.i32Const(4 * 2 * FLAT), ...op.i32Add, ...op.localSet(Q),
    ...op.loop, // $bits
    ...op.localGet(Q),
    ...op.localGet(BASE), ...op.localGet(W), ...op.i64Ctz, ...op.i32WrapI64, ...op.i32Add, ...op.i32Store(0),
    ...op.localGet(Q), ...op.i32Const(4), ...op.i32Add, ...op.localSet(Q),
    ...op.localGet(W), ...op.localGet(W), ...op.i64Const(1), ...op.i64Sub, ...op.i64And, ...op.localTee(W),
    ...op.i64Eqz, ...op.i32Eqz, ...op.brIf(0),
    ...op.end, // $bits
    ...op.end, // more than 2 * FLAT
    ...op.end, // more than FLAT
    ...op.end, // more than EAGER
    ...op.localGet(P), ...op.localGet(COUNT), ...op.i32Const(2), ...op.i32Shl, ...op.i32Add, ...op.localSet(P),
    ...op.end, // all set
    ...op.localGet(I), ...op.i32Const(8), ...op.i32Add, ...op.localSet(I),
    // At a 64-byte boundary after an empty word, step over empty blocks four vectors at a time
    // (after a word with bits the next block is seldom empty: scattered bits, runs).
    ...op.localGet(I), ...op.i32Const(63), ...op.i32And, ...op.localGet(COUNT), ...op.i32Or, ...op.i32Eqz, ...op.if,
    ...op.block, ...op.loop,
    ...op.localGet(I), ...op.localGet(END), ...op.i32GeU, ...op.brIf(1),
    ...at, ...op.v128Load(0), ...at, ...op.v128Load(16), ...op.v128Or,
    ...at, ...op.v128Load(32), ...op.v128Or, ...at, ...op.v128Load(48), ...op.v128Or,
    ...op.v128AnyTrue, ...op.brIf(1),
    ...op.localGet(I), ...op.i32Const(64), ...op.i32Add, ...op.localSet(I),
    ...op.br(0),
    ...op.end, ...op.end,
    ...op.end, // if
    ...op.localGet(I), ...op.localGet(END), ...op.i32GeU, ...op.brIf(1),
    ...at, ...op.i64Load(0), ...op.localSet(W),
    ...op.br(0),
    ...op.end, // $words
    ...op.end, // $done
    ...op.localGet(CELL), ...op.localGet(RESUME), ...op.i32Store(0),
    ...op.localGet(P), ...op.localGet(OUT), ...op.i32Sub, ...op.i32Const(2), ...op.i32ShrU,
  ],
};

/**
 * The same in JS over the bitmap's u32 words (`words`, bitmap at word 0): up to `out.length`
 * set-bit numbers at or after `from` among `end` bytes; returns how many and where to resume.
 */
export function collectJs(words: Uint32Array, from: number, end: number, out: Uint32Array): { count: number; resume: number } {
  const max = out.length;
  let n = 0;
  // Whole u64 words, as the kernel: from's word first, without the bits below from.
  const first = (from >>> 6) << 1;
  const stopAt = end >>> 2;
  for (let i = first; i < stopAt; i += 2) {
    let lo = words[i]!;
    let hi = words[i + 1]!;
    if (i === first) {
      const skip = from & 63;
      if (skip >= 32) (lo = 0), (hi = maskFrom(hi, skip - 32));
      else lo = maskFrom(lo, skip);
    }
    if ((lo | hi) === 0) continue;
    const base = i * 32;
    if (n + WORD_BITS > max) return { count: n, resume: base + (lo !== 0 ? ctz32(lo) : 32 + ctz32(hi)) };
    while (lo !== 0) {
      out[n++] = base + ctz32(lo);
      lo &= lo - 1;
    }
    while (hi !== 0) {
      out[n++] = base + 32 + ctz32(hi);
      hi &= hi - 1;
    }
  }
  return { count: n, resume: end * 8 };
}

/** `word` without its bits below `bit` (0..31). */
function maskFrom(word: number, bit: number): number {
  return (word & (~0 << bit)) >>> 0;
}

function ctz32(x: number): number {
  return 31 - Math.clz32(x & -x);
}
