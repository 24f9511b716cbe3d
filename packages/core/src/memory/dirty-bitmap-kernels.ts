// The bulk operations of DirtyBitmap: WebAssembly SIMD kernels generated at load time, with a
// plain JS fallback of identical semantics where SIMD is unavailable. Both work on 64-byte
// blocks; DirtyBitmap pads its storage to that.

import { collect, collectJs } from './dirty-bitmap-collect.js';
import { encodeModule, I32, I64, op, V128, type WasmFunction } from './wasm-module.js';

/** Bulk bitmap operations over one memory; pointers and lengths in bytes, lengths multiples of 64. */
export interface BitmapKernels {
  /** dst |= src; returns how many bits were newly set in dst; zeroes src when `clear`. */
  merge(dst: number, src: number, length: number, clear: boolean): number;
  /** Number of set bits. */
  popcount(ptr: number, length: number): number;
  /** Offset (from ptr) of the first 64-byte block at or after `from` holding a set bit, or `length`. */
  nextNonZero(ptr: number, from: number, length: number): number;
  /**
   * The numbers of the set bits at or after bit `from` of the `length` bytes at `ptr`, as u32 at
   * `out`, at most `max` (>= 64) of them; returns how many and stores at `cell` (a u32) the bit
   * to resume from, `length * 8` when none is left.
   */
  collect(ptr: number, from: number, length: number, out: number, max: number, cell: number): number;
}

export const BLOCK = 64;
// i32x4 lane sums grow by up to 2 per byte; keep each call well inside 2^32.
const MAX_CALL = 1 << 28;

const [DST, SRC, LEN, CLEAR, I, ACC] = [0, 1, 2, 3, 4, 5];
// merge's extra locals: the block's four source and four destination vectors, then the
// chunk walk's cursor, chunk end, non-empty block count and mode.
const S = (k: number): number => 6 + k;
const D = (k: number): number => 10 + k;
const [J, END, NZ, DENSE] = [14, 15, 16, 17];
const LANES = [0, 1, 2, 3];
const CHUNK = 4096;
// A chunk after one with more non-empty blocks than this runs branch-free: skipping empty
// blocks only pays while the branch is predictable, i.e. while nearly every block is empty
// (measured: a threshold of 4 fell to 0.6x of copy on a random 10% report; 1 keeps >= 0.9x).
const DENSE_BLOCKS = 1;

/** acc += per-lane sum of the byte counts on the stack (each byte at most 32, so no overflow). */
const accumulate = (acc: number) => [
  ...op.i16x8ExtaddPairwiseI8x16U, ...op.i32x4ExtaddPairwiseI16x8U,
  ...op.localGet(acc), ...op.i32x4Add, ...op.localSet(acc),
];

/** Sum the four i32 lanes of `acc` into an i64 on the stack. */
const sumLanes = (acc: number) => [
  ...op.localGet(acc), ...op.i32x4ExtractLane(0), ...op.i64ExtendI32U,
  ...op.localGet(acc), ...op.i32x4ExtractLane(1), ...op.i64ExtendI32U, ...op.i64Add,
  ...op.localGet(acc), ...op.i32x4ExtractLane(2), ...op.i64ExtendI32U, ...op.i64Add,
  ...op.localGet(acc), ...op.i32x4ExtractLane(3), ...op.i64ExtendI32U, ...op.i64Add,
];

/** Push the vector at (base + at + 16 * lane). */
const load = (base: number, lane: number, at = I) => [...op.localGet(base), ...op.localGet(at), ...op.i32Add, ...op.v128Load(16 * lane)];

const store = (base: number, lane: number, value: readonly number[], at = I) => [
  ...op.localGet(base), ...op.localGet(at), ...op.i32Add, ...value, ...op.v128Store(16 * lane),
];

/** Push the OR of the four vectors of the 64-byte block at (base + i). */
const blockOr = (base: number) => [...load(base, 0), ...LANES.slice(1).flatMap((k) => [...load(base, k), ...op.v128Or])];

/** Push the byte-wise popcount sum over the four lanes of `vector(k)`. */
const popcountSum = (vector: (k: number) => number[]) => [
  ...vector(0), ...op.i8x16Popcnt,
  ...LANES.slice(1).flatMap((k) => [...vector(k), ...op.i8x16Popcnt, ...op.i8x16Add]),
];

/** for (i = 0; i < len; i += 64) { body } */
const blocks = (body: number[]) => [
  ...op.i32Const(0), ...op.localSet(I),
  ...op.block, ...op.loop,
  ...op.localGet(I), ...op.localGet(LEN), ...op.i32GeU, ...op.brIf(1),
  ...body,
  ...op.localGet(I), ...op.i32Const(BLOCK), ...op.i32Add, ...op.localSet(I),
  ...op.br(0),
  ...op.end, ...op.end,
];

/** Load the source block at (src + j) into S(0..3) and push whether any bit is set. */
const loadSource = [
  ...LANES.flatMap((k) => [...load(SRC, k, J), ...op.localSet(S(k))]),
  ...op.localGet(S(0)), ...LANES.slice(1).flatMap((k) => [...op.localGet(S(k)), ...op.v128Or]), ...op.v128AnyTrue,
];

/** Merge the loaded source block into (dst + j): count newly set bits, store, clear the source. */
const mergeLoaded = [
  ...LANES.flatMap((k) => [...load(DST, k, J), ...op.localSet(D(k))]),
  ...popcountSum((k) => [...op.localGet(S(k)), ...op.localGet(D(k)), ...op.v128AndNot]),
  ...accumulate(ACC),
  ...LANES.flatMap((k) => store(DST, k, [...op.localGet(D(k)), ...op.localGet(S(k)), ...op.v128Or], J)),
  ...op.localGet(CLEAR), ...op.if, ...LANES.flatMap((k) => store(SRC, k, op.v128Zero, J)), ...op.end,
];

/** for (j = i; j < end; j += 64) { body } */
const chunkBlocks = (body: number[]) => [
  ...op.localGet(I), ...op.localSet(J),
  ...op.block, ...op.loop,
  ...op.localGet(J), ...op.localGet(END), ...op.i32GeU, ...op.brIf(1),
  ...body,
  ...op.localGet(J), ...op.i32Const(BLOCK), ...op.i32Add, ...op.localSet(J),
  ...op.br(0),
  ...op.end, ...op.end,
];

const merge: WasmFunction = {
  name: 'merge',
  params: [I32, I32, I32, I32],
  results: [I64],
  locals: [I32, V128, V128, V128, V128, V128, V128, V128, V128, V128, I32, I32, I32, I32],
  body: [
    ...op.i32Const(0), ...op.localSet(I),
    ...op.block, ...op.loop,
    ...op.localGet(I), ...op.localGet(LEN), ...op.i32GeU, ...op.brIf(1),
    // end = min(i + CHUNK, len)
    ...op.localGet(I), ...op.i32Const(CHUNK), ...op.i32Add, ...op.localGet(LEN),
    ...op.localGet(I), ...op.i32Const(CHUNK), ...op.i32Add, ...op.localGet(LEN), ...op.i32LtU, ...op.select, ...op.localSet(END),
    ...op.i32Const(0), ...op.localSet(NZ),
    ...op.localGet(DENSE), ...op.if,
    // Dense chunk: merge every block, branch-free; count the non-empty ones.
    ...chunkBlocks([...loadSource, ...op.localGet(NZ), ...op.i32Add, ...op.localSet(NZ), ...mergeLoaded]),
    ...op.else,
    // Sparse chunk: merge only blocks with a set bit.
    ...chunkBlocks([
      ...loadSource, ...op.if,
      ...op.localGet(NZ), ...op.i32Const(1), ...op.i32Add, ...op.localSet(NZ),
      ...mergeLoaded,
      ...op.end,
    ]),
    ...op.end,
    ...op.localGet(NZ), ...op.i32Const(DENSE_BLOCKS), ...op.i32GtU, ...op.localSet(DENSE),
    ...op.localGet(END), ...op.localSet(I),
    ...op.br(0),
    ...op.end, ...op.end,
    ...sumLanes(ACC),
  ],
};

// popcount(ptr, _, len): params laid out like merge's so the block helpers can be shared.
const popcount: WasmFunction = {
  name: 'popcount',
  params: [I32, I32, I32],
  results: [I64],
  locals: [I32, I32, V128], // index 3 pads: I is local 4 and the accumulator local 5
  body: [...blocks([...popcountSum((k) => load(DST, k)), ...accumulate(ACC)]), ...sumLanes(ACC)],
};

// nextNonZero(ptr, from, len): params (DST, SRC=from, LEN); I starts at `from`.
const nextNonZero: WasmFunction = {
  name: 'nextNonZero',
  params: [I32, I32, I32],
  results: [I32],
  locals: [I32, I32], // index 3 pads so that I is local 4, as in the shared helpers
  body: [
    ...op.localGet(SRC), ...op.localSet(I),
    ...op.block, ...op.loop,
    ...op.localGet(I), ...op.localGet(LEN), ...op.i32GeU, ...op.brIf(1),
    ...blockOr(DST), ...op.v128AnyTrue, ...op.if, ...op.localGet(I), ...op.return, ...op.end,
    ...op.localGet(I), ...op.i32Const(BLOCK), ...op.i32Add, ...op.localSet(I),
    ...op.br(0),
    ...op.end, ...op.end,
    ...op.localGet(LEN),
  ],
};

let compiled: WebAssembly.Module | null | undefined;

/** The compiled SIMD module, or null where this engine has no WebAssembly SIMD. */
function simdModule(): WebAssembly.Module | null {
  if (compiled === undefined) {
    const bytes = encodeModule([merge, popcount, nextNonZero, collect]);
    compiled = typeof WebAssembly === 'object' && WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null;
  }
  return compiled;
}

/** Whether bitmaps run on WebAssembly SIMD here (else the JS fallback). */
export function simdAvailable(): boolean {
  return simdModule() !== null;
}

/** Memory for bitmaps of `bytes` total, and kernels over it (SIMD unless `forceJs`). */
export function createBitmapMemory(bytes: number, forceJs = false): { buffer: ArrayBuffer; kernels: BitmapKernels } {
  const module = forceJs ? null : simdModule();
  if (!module) {
    const buffer = new ArrayBuffer(bytes);
    return { buffer, kernels: jsKernels(buffer) };
  }
  const pages = Math.max(1, Math.ceil(bytes / 65536));
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
  const exports = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as {
    merge(dst: number, src: number, len: number, clear: number): bigint;
    popcount(ptr: number, unused: number, len: number): bigint;
    nextNonZero(ptr: number, from: number, len: number): number;
    collect(ptr: number, from: number, end: number, out: number, max: number, cell: number): number;
  };
  const kernels: BitmapKernels = {
    merge: (dst, src, length, clear) => chunked(length, (at, n) => Number(exports.merge(dst + at, src + at, n, clear ? 1 : 0))),
    popcount: (ptr, length) => chunked(length, (at, n) => Number(exports.popcount(ptr + at, 0, n))),
    nextNonZero: (ptr, from, length) => exports.nextNonZero(ptr, from, length),
    collect: exports.collect,
  };
  return { buffer: memory.buffer, kernels };
}

function chunked(length: number, call: (at: number, n: number) => number): number {
  let total = 0;
  for (let at = 0; at < length; at += MAX_CALL) total += call(at, Math.min(MAX_CALL, length - at));
  return total;
}

/** Set bits in a 32-bit word. */
export function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** The same operations in plain JS, a 32-bit word at a time. */
function jsKernels(buffer: ArrayBuffer): BitmapKernels {
  const w = new Uint32Array(buffer);
  return {
    merge(dst, src, length, clear) {
      let newly = 0;
      for (let i = src >>> 2, j = dst >>> 2, end = (src + length) >>> 2; i < end; i++, j++) {
        const s = w[i]!;
        if (s === 0) continue;
        newly += popcount32(s & ~w[j]!);
        w[j] = w[j]! | s;
        if (clear) w[i] = 0;
      }
      return newly;
    },
    popcount(ptr, length) {
      let n = 0;
      for (let i = ptr >>> 2, end = (ptr + length) >>> 2; i < end; i++) if (w[i] !== 0) n += popcount32(w[i]!);
      return n;
    },
    nextNonZero(ptr, from, length) {
      for (let at = from; at < length; at += BLOCK) {
        for (let i = (ptr + at) >>> 2, end = i + BLOCK / 4; i < end; i++) if (w[i] !== 0) return at;
      }
      return length;
    },
    collect(ptr, from, length, out, max, cell) {
      const { count, resume } = collectJs(new Uint32Array(buffer, ptr, length >>> 2), from, length, new Uint32Array(buffer, out, max));
      w[cell >>> 2] = resume;
      return count;
    },
  };
}
