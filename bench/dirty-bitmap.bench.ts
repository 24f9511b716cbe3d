// DirtyBitmap merge of a kernel report into the migration bitmap (OR, count newly dirty, clear
// the report) for a 1 TiB guest at 4 KiB pages, against Buffer.copy of the same 32 MiB; and
// set-bit iteration against a plain loop over the bytes.

import { DirtyBitmap } from '@vmmkit/core';
import { compare, type Benchmark, type Row } from './harness.js';

const PAGES = 2 ** 28; // 1 TiB / 4 KiB
const BYTES = PAGES / 8;

/** A report where each 64-byte block (512 pages) is dirty with probability `density`, at random: the worst case for branches. */
function pattern(density: number): Uint8Array {
  const p = new Uint8Array(BYTES);
  let seed = 7;
  for (let i = 0; i < BYTES; i += 64) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    if (seed / 2 ** 32 < density) p.fill(0xff, i, i + 64);
  }
  return p;
}

export const dirtyBitmapBenchmark: Benchmark = {
  name: 'dirty bitmap',
  run(): Row[] {
    const rows: Row[] = [];
    const src = Buffer.alloc(BYTES, 0x5a);
    const dst = Buffer.alloc(BYTES);
    for (const [label, density] of [['empty report', 0], ['1% dirty', 0.01], ['10% dirty', 0.1], ['50% dirty', 0.5], ['all dirty', 1]] as const) {
      const report = pattern(density);
      const bitmap = new DirtyBitmap(PAGES);
      const r = compare({
        baseline: () => src.copy(dst),
        prepare: () => {
          bitmap.clear();
          bitmap.incoming.set(report);
        },
        subject: () => bitmap.mergeIncoming(),
      });
      rows.push({
        benchmark: 'DirtyBitmap merge, 1 TiB guest (32 MiB)',
        case: label,
        ratio: r.ratio,
        baseline: 'Buffer.copy of 32 MiB',
        note: `${DirtyBitmap.simd ? 'wasm simd' : 'js'}; merge ${r.subjectMs.toFixed(2)} ms`,
      });
    }
    const report = pattern(0.01);
    const bitmap = new DirtyBitmap(PAGES);
    bitmap.incoming.set(report);
    bitmap.mergeIncoming();
    let sink = 0;
    const r = compare({
      trials: 7,
      baseline: () => {
        // The naive way: test every byte for set bits.
        for (let i = 0; i < BYTES; i++) if (report[i] !== 0) for (let b = 0; b < 8; b++) if (report[i]! & (1 << b)) sink += i * 8 + b;
      },
      subject: () => bitmap.forEachSetBit((bit) => (sink += bit)),
    });
    rows.push({
      benchmark: 'DirtyBitmap set-bit iteration, 1 TiB',
      case: '1% dirty',
      ratio: r.ratio,
      baseline: 'byte-by-byte scan of the same bitmap',
      note: `${r.subjectMs.toFixed(1)} ms${sink < 0 ? '' : ''}`,
    });
    return rows;
  },
};
