// PageDigest: a 32-bit digest of each 4 KiB page, fast enough to check every page a migration
// moves (an xxHash32-style round on 32 lanes, WebAssembly SIMD with a JS fallback of identical
// results). It detects corruption, not tampering: it is no cryptographic hash.

import { ArgumentError } from '../errors/vmm-error-base.js';
import { encodeModule, I32, op, V128, type WasmFunction } from './wasm-module.js';

/** The bytes one digest covers. */
export const DIGEST_PAGE_SIZE = 4096;

// xxHash32's primes.
const P1 = 0x9e3779b1;
const P2 = 0x85ebca77;
const P3 = 0xc2b2ae3d;
const P4 = 0x27d4eb2f;
const P5 = 0x165667b1;
/** A page is read as 32 lanes of u32 words: lane j takes words j, j + 32, j + 64, ... */
const LANES = 32;
const STEP = LANES * 4;
const VECTORS = LANES / 4;
/** Lane j starts at (j + 1) * P5, so that equal words in different lanes weigh differently. */
const SEEDS = Array.from({ length: LANES }, (_, j) => Math.imul(j + 1, P5) >>> 0);
/** Pages per kernel call: the wasm memory holds this many pages and their digests. */
const BATCH = 16;
const OUT = BATCH * DIGEST_PAGE_SIZE;

/**
 * The digest, spelled out (the SIMD kernel computes exactly this): each lane runs xxHash32's
 * round `a = rotl(a + w * P2, 13) * P1` over its 32 words; the 8 lane vectors are folded
 * lane-wise by the same round (starting from P4), the 4 resulting lanes into one value
 * (starting from 4096), and xxHash32's avalanche finishes it. Every round is a bijection of its
 * state for a fixed word and of its word for a fixed state, so a change confined to one 32-bit
 * word of a page always changes the digest; other changes go unnoticed with probability ~2^-32.
 */
function digestJs(view: DataView, at: number): number {
  const acc = SEEDS.slice();
  for (let i = 0; i < DIGEST_PAGE_SIZE; i += STEP) {
    for (let j = 0; j < LANES; j++) acc[j] = round(acc[j]!, view.getUint32(at + i + 4 * j, true));
  }
  const v = [P4, P4, P4, P4];
  for (let k = 0; k < VECTORS; k++) for (let lane = 0; lane < 4; lane++) v[lane] = round(v[lane]!, acc[4 * k + lane]!);
  let h = DIGEST_PAGE_SIZE;
  for (let lane = 0; lane < 4; lane++) h = round(h, v[lane]!);
  h ^= h >>> 15;
  h = Math.imul(h, P2);
  h ^= h >>> 13;
  h = Math.imul(h, P3);
  h ^= h >>> 16;
  return h >>> 0;
}

function round(a: number, w: number): number {
  const x = (a + Math.imul(w, P2)) | 0;
  return Math.imul((x << 13) | (x >>> 19), P1);
}

// digest(src, pages, out): the digests of `pages` pages at src, as u32 at out.
const [SRC, PAGES, DST, PAGE, I, BASE, H] = [0, 1, 2, 3, 4, 5, 6];
const ACC = (k: number): number => 7 + k;
const [V, C1, C2] = [7 + VECTORS, 8 + VECTORS, 9 + VECTORS];

/** Push rotl(state + word * C2, 13) * C1 on vectors; `word` pushes the word vector. */
const vectorRound = (state: number, word: readonly number[]) => [
  ...op.localGet(state), ...word, ...op.localGet(C2), ...op.i32x4Mul, ...op.i32x4Add, ...op.localSet(state),
  ...op.localGet(state), ...op.i32Const(13), ...op.i32x4Shl, ...op.localGet(state), ...op.i32Const(19), ...op.i32x4ShrU, ...op.v128Or,
  ...op.localGet(C1), ...op.i32x4Mul, ...op.localSet(state),
];

/** h = rotl(h + word * P2, 13) * P1 on i32; `word` pushes the word. */
const scalarRound = (word: readonly number[]) => [
  ...op.localGet(H), ...word, ...op.i32Const(P2 | 0), ...op.i32Mul, ...op.i32Add,
  ...op.i32Const(13), ...op.i32Rotl, ...op.i32Const(P1 | 0), ...op.i32Mul, ...op.localSet(H),
];

/** h ^= h >>> s */
const xorShift = (s: number) => [...op.localGet(H), ...op.localGet(H), ...op.i32Const(s), ...op.i32ShrU, ...op.i32Xor, ...op.localSet(H)];
const mulH = (p: number) => [...op.localGet(H), ...op.i32Const(p | 0), ...op.i32Mul, ...op.localSet(H)];

/** for (counter = 0; counter < limit; counter += step) { body }, limit a local or a constant. */
const loop = (counter: number, limit: readonly number[], step: number, body: readonly number[]) => [
  ...op.i32Const(0), ...op.localSet(counter),
  ...op.block, ...op.loop,
  ...op.localGet(counter), ...limit, ...op.i32GeU, ...op.brIf(1),
  ...body,
  ...op.localGet(counter), ...op.i32Const(step), ...op.i32Add, ...op.localSet(counter),
  ...op.br(0),
  ...op.end, ...op.end,
];

const digestPage = [
  ...op.localGet(SRC), ...op.localGet(PAGE), ...op.i32Const(12), ...op.i32Shl, ...op.i32Add, ...op.localSet(BASE),
  ...Array.from({ length: VECTORS }, (_, k) => [...op.v128ConstI32x4(SEEDS.slice(4 * k, 4 * k + 4)), ...op.localSet(ACC(k))]).flat(),
  ...loop(I, op.i32Const(DIGEST_PAGE_SIZE), STEP, Array.from({ length: VECTORS }, (_, k) =>
    vectorRound(ACC(k), [...op.localGet(BASE), ...op.localGet(I), ...op.i32Add, ...op.v128Load(16 * k)])).flat()),
  ...op.i32Const(P4 | 0), ...op.i32x4Splat, ...op.localSet(V),
  ...Array.from({ length: VECTORS }, (_, k) => vectorRound(V, op.localGet(ACC(k)))).flat(),
  ...op.i32Const(DIGEST_PAGE_SIZE), ...op.localSet(H),
  ...[0, 1, 2, 3].flatMap((lane) => scalarRound([...op.localGet(V), ...op.i32x4ExtractLane(lane)])),
  ...xorShift(15), ...mulH(P2), ...xorShift(13), ...mulH(P3), ...xorShift(16),
  ...op.localGet(DST), ...op.localGet(PAGE), ...op.i32Const(2), ...op.i32Shl, ...op.i32Add, ...op.localGet(H), ...op.i32Store(0),
];

const digest: WasmFunction = {
  name: 'digest',
  params: [I32, I32, I32],
  results: [],
  locals: [I32, I32, I32, I32, ...new Array<number>(VECTORS + 3).fill(V128)],
  body: [
    ...op.i32Const(P1 | 0), ...op.i32x4Splat, ...op.localSet(C1),
    ...op.i32Const(P2 | 0), ...op.i32x4Splat, ...op.localSet(C2),
    ...loop(PAGE, op.localGet(PAGES), 1, digestPage),
  ],
};

let compiled: WebAssembly.Module | null | undefined;

function simdModule(): WebAssembly.Module | null {
  if (compiled === undefined) {
    const bytes = encodeModule([digest]);
    compiled = typeof WebAssembly === 'object' && WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null;
  }
  return compiled;
}

/** Options of a {@link PageDigest}. */
export interface PageDigestOptions {
  /** Use the plain JS digest even where WebAssembly SIMD exists (tests, comparisons). */
  readonly forceJs?: boolean;
}

/**
 * Computes page digests. An instance owns a small working memory (128 KiB); computing is
 * synchronous, so one instance serves any number of streams of one thread.
 */
export class PageDigest {
  readonly #kernel: ((src: number, pages: number, out: number) => void) | undefined;
  readonly #memory: Uint8Array | undefined;
  readonly #digests: DataView | undefined;

  constructor(options: PageDigestOptions = {}) {
    const module = options.forceJs ? null : simdModule();
    if (!module) return;
    const memory = new WebAssembly.Memory({ initial: 2, maximum: 2 });
    const exports = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as { digest(src: number, pages: number, out: number): void };
    this.#kernel = exports.digest;
    this.#memory = new Uint8Array(memory.buffer);
    this.#digests = new DataView(memory.buffer, OUT, BATCH * 4);
  }

  /** Whether this instance runs on WebAssembly SIMD (else the JS fallback, with the same results). */
  get simd(): boolean {
    return this.#kernel !== undefined;
  }

  /**
   * Write the digest of each 4096-byte page of `pages` to `out[at]`, `out[at + 1]`, ...
   * @throws ArgumentError when `pages` is not a whole number of pages or `out` is too short.
   */
  compute(pages: Uint8Array, out: Uint32Array, at = 0): void {
    const count = pages.byteLength / DIGEST_PAGE_SIZE;
    if (!Number.isInteger(count)) throw new ArgumentError(`PageDigest: ${pages.byteLength} bytes are not whole pages of ${DIGEST_PAGE_SIZE}`);
    if (at + count > out.length) throw new ArgumentError(`PageDigest: ${count} digests do not fit at ${at} of ${out.length}`);
    if (!this.#kernel) {
      const view = new DataView(pages.buffer, pages.byteOffset, pages.byteLength);
      for (let p = 0; p < count; p++) out[at + p] = digestJs(view, p * DIGEST_PAGE_SIZE);
      return;
    }
    // Page data lives outside wasm memory (guest RAM): each batch is copied in while still hot.
    for (let first = 0; first < count; first += BATCH) {
      const n = Math.min(BATCH, count - first);
      this.#memory!.set(pages.subarray(first * DIGEST_PAGE_SIZE, (first + n) * DIGEST_PAGE_SIZE));
      this.#kernel(0, n, OUT);
      for (let p = 0; p < n; p++) out[at + first + p] = this.#digests!.getUint32(4 * p, true);
    }
  }
}
