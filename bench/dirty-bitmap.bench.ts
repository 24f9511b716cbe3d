// DirtyBitmap's kernels on a 1 TiB guest at 4 KiB pages (a 32 MiB bitmap) against C compiled by
// the bench (gcc -O3 -march=native) on the same buffers, in the same run:
// - the merge of a kernel report into the migration bitmap (OR, count newly dirty, clear the
//   report), against the better of a branch-free C loop and one that skips zero words;
// - set-bit iteration (every set bit visited in order), against a C ctz loop; beside it the
//   collect kernel alone (batches produced, not read), so a row's time splits into kernel and visit.
// The JS fallback's merge is reported against the same C, for scale.

import { DirtyBitmap } from '@vmmkit/core';
import { compare, type Benchmark, type Row } from './harness.js';
import { C_COMPILER, nativeLibrary } from './native.js';

const PAGES = 2 ** 28; // 1 TiB / 4 KiB
const BYTES = PAGES / 8;
const WORDS = BYTES / 8;

/** A report where each 64-byte block (512 pages) is dirty with probability `density`, at random: the worst case for branches. */
function blockPattern(density: number): Uint8Array {
  const p = new Uint8Array(BYTES);
  let seed = 7;
  for (let i = 0; i < BYTES; i += 64) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    if (seed / 2 ** 32 < density) p.fill(0xff, i, i + 64);
  }
  return p;
}

/** A bitmap where each page is dirty with probability `density` on its own (scattered guest writes). */
function bitPattern(density: number): Uint8Array {
  const p = new Uint8Array(BYTES);
  let seed = 11;
  for (let bit = 0; bit < PAGES; bit++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    if (seed / 2 ** 32 < density) p[bit >>> 3]! |= 1 << (bit & 7);
  }
  return p;
}

/** The visit of a batch: the bit numbers' sum modulo 2^32, in a local int32 (a register, as in C). */
function sumBits(bits: Uint32Array, count: number): number {
  let s = 0;
  for (let i = 0; i < count; i++) s = (s + bits[i]!) | 0;
  return s;
}

/** The sum of the bit numbers start .. start + length - 1, modulo 2^32 (as the C loop sums). */
function sumRun(start: number, length: number): number {
  // length * start + length * (length - 1) / 2, each product taken modulo 2^32.
  const pairs = length % 2 === 0 ? Math.imul(length / 2, length - 1) : Math.imul(length, (length - 1) / 2);
  return (Math.imul(length, start) + pairs) | 0;
}

const MERGE_CASES = [['empty report', 0], ['1% dirty', 0.01], ['10% dirty', 0.1], ['50% dirty', 0.5], ['100% dirty', 1]] as const;

export const dirtyBitmapBenchmark: Benchmark = {
  name: 'dirty bitmap',
  run(): Row[] {
    const rows: Row[] = [];
    const native = nativeLibrary('dirty-bitmap');
    const skip = (benchmark: string, what: string): void => void rows.push({ benchmark, case: what, ratio: NaN, baseline: `C (${C_COMPILER})`, skipped: native.missing });
    const mergeBench = 'DirtyBitmap merge, 1 TiB guest (32 MiB)';
    const iterBench = 'DirtyBitmap set-bit iteration, 1 TiB guest';
    if (!native.lib) {
      for (const [label] of MERGE_CASES) skip(mergeBench, label);
      skip(iterBench, 'all cases');
      return rows;
    }
    const cMerge = {
      'branch-free': native.lib.func('uint64_t merge_plain(void *dst, void *src, size_t words)'),
      'zero-skipping': native.lib.func('uint64_t merge_skip(void *dst, void *src, size_t words)'),
    };
    const ctzSum = native.lib.func('uint32_t ctz_sum(void *words, size_t n)');

    for (const [engine, forceJs] of [[DirtyBitmap.simd ? 'wasm simd' : 'js', false], ['js fallback', true]] as const) {
      if (forceJs && !DirtyBitmap.simd) continue;
      for (const [label, density] of MERGE_CASES) {
        if (forceJs && density !== 0.1 && density !== 1) continue;
        const report = blockPattern(density);
        const bitmap = new DirtyBitmap(PAGES, { forceJs });
        const reset = (): void => {
          bitmap.clear();
          bitmap.incoming.set(report);
        };
        // The subject and C must agree before either is timed.
        reset();
        const expected = Number(cMerge['branch-free'](bitmap.bytes, bitmap.incoming, WORDS));
        reset();
        const got = bitmap.mergeIncoming();
        if (got !== expected) throw new Error(`bench: merge counted ${got} newly dirty pages, C ${expected}`);
        let best: { ratio: number; name: string; subjectMs: number; baselineMs: number } | undefined;
        for (const [name, fn] of Object.entries(cMerge)) {
          const r = compare({
            prepareBaseline: reset,
            baseline: () => void fn(bitmap.bytes, bitmap.incoming, WORDS),
            prepare: reset,
            subject: () => void bitmap.mergeIncoming(),
          });
          if (!best || r.ratio < best.ratio) best = { ...r, name };
        }
        const gbps = (ms: number): string => `${(BYTES / ms / 1e6).toFixed(1)} GB/s`;
        rows.push({
          benchmark: mergeBench,
          case: `${engine}: ${label}`,
          ratio: best!.ratio,
          baseline: `C ${best!.name} loop (${C_COMPILER})`,
          note: `merge ${gbps(best!.subjectMs)}, C ${gbps(best!.baselineMs)} of report`,
        });
      }
    }

    for (const [label, pattern] of [
      ['1% dirty, in 512-page blocks', () => blockPattern(0.01)],
      ['10% dirty, in 512-page blocks', () => blockPattern(0.1)],
      ['1% dirty, scattered pages', () => bitPattern(0.01)],
      ['10% dirty, scattered pages', () => bitPattern(0.1)],
    ] as const) {
      const bitmap = new DirtyBitmap(PAGES);
      bitmap.incoming.set(pattern());
      bitmap.mergeIncoming();
      // Every visit sums the bit numbers modulo 2^32, as the C loop does.
      const expected = ctzSum(bitmap.bytes, WORDS) as number;
      const batched = (): number => {
        let sum = 0;
        bitmap.forEachSetBitBatch((bits, count) => void (sum = (sum + sumBits(bits, count)) | 0));
        return sum >>> 0;
      };
      const perBit = (): number => {
        let sum = 0;
        bitmap.forEachSetBit((bit) => void (sum = (sum + bit) | 0));
        return sum >>> 0;
      };
      // Runs (start, length): the form the migration's page path wants (a record is a run), and
      // where pages cluster the caller works per run, not per bit.
      const runs = (): number => {
        let sum = 0;
        bitmap.forEachRun((start, length) => void (sum = (sum + sumRun(start, length)) | 0));
        return sum >>> 0;
      };
      // Not a visit (no bit is read after the kernel writes it): the collect kernel alone, to show
      // how the forEachSetBitBatch row splits between the kernel and the caller's JS loop.
      const kernelOnly = (): number => {
        let n = 0;
        bitmap.forEachSetBitBatch((_, count) => void (n += count));
        return n;
      };
      const forms = [
        ['forEachSetBitBatch', batched, expected],
        ['forEachRun (a call per run)', runs, expected],
        ['forEachSetBit (a call per bit)', perBit, expected],
        ['collect kernel alone (batches counted, bits not visited)', kernelOnly, bitmap.count()],
      ] as const;
      for (const [form, visit, want] of forms) {
        if (visit() !== want) throw new Error(`bench: ${form} gave ${visit()}, expected ${want}`);
        const r = compare({ trials: 9, baseline: () => void ctzSum(bitmap.bytes, WORDS), subject: () => void visit() });
        rows.push({
          benchmark: iterBench,
          case: `${form}: ${label}`,
          ratio: r.ratio,
          baseline: `C ctz loop (${C_COMPILER})`,
          note: `${bitmap.count()} bits: ${r.subjectMs.toFixed(2)} ms, C ${r.baselineMs.toFixed(2)} ms`,
        });
      }
    }
    return rows;
  },
};
