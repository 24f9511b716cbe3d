import { describe, expect, it } from 'vitest';
import { DirtyBitmap } from '../src/memory/dirty-bitmap.js';
import { ArgumentError } from '../src/errors/vmm-error-base.js';

/** A deterministic PRNG, so failures reproduce. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 2 ** 32;
  };
}

const bits = (b: DirtyBitmap): number[] => {
  const out: number[] = [];
  b.forEachSetBit((i) => out.push(i));
  return out;
};

describe.for([false, true])('DirtyBitmap (forceJs=%s)', (forceJs) => {
  const make = (pages: number) => new DirtyBitmap(pages, { forceJs });

  it('uses the kernel layout: bit i is byte i/8, bit i%8, in ceil(pages/64) u64 words', () => {
    const b = make(130);
    expect(b.bytes.byteLength).toBe(24);
    expect(b.incoming.byteLength).toBe(24);
    b.set(0);
    b.set(9);
    b.set(129);
    expect([...b.bytes.subarray(0, 2)]).toEqual([0x01, 0x02]);
    expect(b.bytes[16]).toBe(0x02);
    expect(new DataView(b.bytes.buffer, b.bytes.byteOffset).getBigUint64(0, true)).toBe(0x201n);
  });

  it('merges a report, counting only newly dirty pages, and zeroes the report', () => {
    const b = make(1000);
    b.setRange(10, 20); // 10..29 already dirty
    const report = new DataView(b.incoming.buffer, b.incoming.byteOffset, b.incoming.byteLength);
    report.setUint32(0, 0xffffffff, true); // pages 0..31: 12 are new (0..9, 30, 31)
    b.incoming[124] = 0x80; // page 999
    expect(b.mergeIncoming()).toBe(12 + 1);
    expect(b.incoming.every((x) => x === 0)).toBe(true);
    expect(b.count()).toBe(33);
    expect(b.mergeIncoming()).toBe(0);
  });

  it('drops report bits past the last page', () => {
    const b = make(70);
    b.incoming.fill(0xff);
    expect(b.mergeIncoming()).toBe(70);
    expect(b.count()).toBe(70);
    expect(b.nextSetBit(69)).toBe(69);
    expect(b.nextSetBit(70)).toBe(-1);
  });

  it('sets and clears ranges at odd offsets and lengths', () => {
    const b = make(300);
    b.setRange(3, 250);
    b.clearRange(31, 34);
    b.clearRange(200, 1);
    const expected = [];
    for (let i = 3; i < 253; i++) if (!(i >= 31 && i < 65) && i !== 200) expected.push(i);
    expect(bits(b)).toEqual(expected);
    expect(() => b.setRange(299, 2)).toThrow(ArgumentError);
    // setRange returns how many bits it newly set.
    expect(b.setRange(0, 300)).toBe(300 - expected.length);
    expect(b.setRange(0, 300)).toBe(0);
    expect(b.setRange(40, 1)).toBe(0);
  });

  it('counts what setRange newly sets over whole blocks and the words around them', () => {
    const b = make(100_000);
    const r = rng(11);
    for (let i = 0; i < 3000; i++) b.set(Math.floor(r() * 100_000));
    for (const [start, count] of [[37, 99_000], [0, 100_000], [1024, 2048], [513, 511]] as const) {
      const before = b.count();
      expect(b.setRange(start, count), `setRange(${start}, ${count})`).toBe(b.count() - before);
      b.clearRange(start + 7, count >> 1);
    }
  });

  it('reports runs, skipping long empty stretches', () => {
    const b = make(1 << 20);
    b.setRange(5, 3);
    b.setRange(64 * 1000, 100);
    b.set((1 << 20) - 1);
    const runs: [number, number][] = [];
    b.forEachRun((s, n) => runs.push([s, n]));
    expect(runs).toEqual([[5, 3], [64000, 100], [(1 << 20) - 1, 1]]);
  });

  it('agrees with a naive model on random reports', () => {
    const random = rng(42);
    for (const pages of [1, 63, 64, 65, 511, 512, 513, 4097, 12345]) {
      const b = make(pages);
      const model = new Uint8Array(pages);
      for (let round = 0; round < 4; round++) {
        const report = new Uint8Array(pages);
        let expectedNew = 0;
        for (let i = 0; i < pages; i++) {
          if (random() < 0.3) {
            report[i] = 1;
            b.incoming[i >>> 3] |= 1 << (i & 7);
          }
          if (report[i] && !model[i]) expectedNew++;
          model[i] ||= report[i]!;
        }
        expect(b.mergeIncoming(), `pages=${pages} round=${round}`).toBe(expectedNew);
      }
      expect(bits(b)).toEqual([...model.keys()].filter((i) => model[i]));
      expect(b.count()).toBe(model.reduce((a, x) => a + x, 0));
    }
  });

  it('merges another bitmap, optionally clearing it', () => {
    const a = make(200);
    const c = make(200);
    a.set(1);
    c.setRange(0, 3);
    expect(a.merge(c)).toBe(2);
    expect(c.count()).toBe(3);
    expect(a.merge(c, { clearSource: true })).toBe(0);
    expect(c.count()).toBe(0);
    expect(() => a.merge(make(201))).toThrow(/merging 201 pages into 200/);
  });

  it('hands out the set bits in ascending batches, across batch boundaries and whole set words', () => {
    const pages = 300_007;
    const b = make(pages);
    const random = rng(5);
    // Scattered bits, runs of whole words, and a dense stretch (more bits than one batch holds).
    for (let i = 0; i < 2000; i++) b.set(Math.floor(random() * pages));
    b.setRange(64 * 100, 64 * 40);
    b.setRange(100_001, 9_000);
    b.set(pages - 1);
    const expected: number[] = [];
    for (let i = 0; i < pages; i++) if (b.test(i)) expected.push(i);
    const got: number[] = [];
    let batches = 0;
    b.forEachSetBitBatch((batch, count) => {
      expect(count).toBeGreaterThan(0);
      expect(count).toBeLessThanOrEqual(batch.length);
      batches++;
      for (let i = 0; i < count; i++) got.push(batch[i]!);
    });
    expect(batches).toBeGreaterThan(2);
    expect(got).toEqual(expected);
    expect(bits(b)).toEqual(expected);
  });

  it('handles an empty bitmap', () => {
    const b = make(0);
    expect(b.count()).toBe(0);
    expect(b.nextSetBit(0)).toBe(-1);
    expect(b.mergeIncoming()).toBe(0);
  });
});

describe('the WebAssembly and JS kernels', () => {
  /** A random report mixing empty stretches, scattered bits, whole set words and single words. */
  function randomReport(pages: number, random: () => number): Uint8Array {
    const bytes = new Uint8Array(DirtyBitmap.byteLength(pages));
    for (let at = 0; at < bytes.length; ) {
      const span = 1 + Math.floor(random() * 200);
      const kind = random();
      for (let i = at; i < Math.min(at + span, bytes.length); i++) {
        bytes[i] = kind < 0.3 ? 0 : kind < 0.6 ? (random() < 0.1 ? 1 << Math.floor(random() * 8) : 0) : kind < 0.85 ? 0xff : Math.floor(random() * 256);
      }
      at += span;
    }
    // Bits past the last page: both must drop them.
    if (pages % 8 !== 0) bytes[bytes.length - 1]! |= 0xff << pages % 8;
    return bytes;
  }

  it('agree on random bitmaps: merge counts and results, set bits, counts', () => {
    const random = rng(1234);
    for (const pages of [64, 1000, 4096 * 8 + 3, 200_000]) {
      const simd = new DirtyBitmap(pages);
      const js = new DirtyBitmap(pages, { forceJs: true });
      for (let round = 0; round < 5; round++) {
        const report = randomReport(pages, random);
        simd.incoming.set(report);
        js.incoming.set(report);
        expect(simd.mergeIncoming(), `pages=${pages} round=${round}`).toBe(js.mergeIncoming());
        expect(simd.bytes).toEqual(js.bytes);
        expect(simd.count()).toBe(js.count());
        const a: number[] = [];
        const b: number[] = [];
        simd.forEachSetBit((i) => a.push(i));
        js.forEachSetBit((i) => b.push(i));
        expect(a).toEqual(b);
        expect(a.length).toBe(simd.count());
        if (round === 2) (simd.clear(), js.clear());
      }
    }
  });
  it('agree with a bit-by-bit reference on words of every population count, at edges and tails', () => {
    // The SIMD collect writes groups of numbers per word whatever its count and branches only at
    // the group sizes; words of each count 0..64 (around 2, 8 and 16 above all), in any order,
    // at batch boundaries and in a last partial word, must all come out exactly.
    const random = rng(99);
    for (const pages of [1, 63, 64, 65, 511, 512, 513, 4096 * 3 + 17, 64 * 5000 + 33]) {
      const simd = new DirtyBitmap(pages);
      const js = new DirtyBitmap(pages, { forceJs: true });
      const words = Math.ceil(pages / 64);
      const view = new DataView(simd.incoming.buffer, simd.incoming.byteOffset, simd.incoming.byteLength);
      for (let w = 0; w < words; w++) {
        const count = w % 7 === 0 ? Math.floor(random() * 65) : [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64][Math.floor(random() * 12)]!;
        // `count` distinct random bits of the word.
        const positions = Array.from({ length: 64 }, (_, i) => i).sort(() => random() - 0.5).slice(0, count);
        let word = 0n;
        for (const bit of positions) word |= 1n << BigInt(bit);
        view.setBigUint64(w * 8, word, true);
      }
      js.incoming.set(simd.incoming);
      expect(simd.mergeIncoming()).toBe(js.mergeIncoming());
      const reference: number[] = [];
      for (let i = 0; i < pages; i++) if (simd.test(i)) reference.push(i);
      for (const b of [simd, js]) {
        const got: number[] = [];
        b.forEachSetBitBatch((batch, count) => {
          for (let i = 0; i < count; i++) got.push(batch[i]!);
        });
        expect(got, `pages=${pages}`).toEqual(reference);
      }
    }
  });
});

it('runs on WebAssembly SIMD on this engine', () => {
  expect(DirtyBitmap.simd).toBe(true);
});
