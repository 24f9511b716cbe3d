// PageDigest: the SIMD kernel and the JS fallback give the same digests, and a change confined to
// one 32-bit word of a page (any bits of it) always changes the page's digest.

import { describe, expect, it } from 'vitest';
import { DIGEST_PAGE_SIZE, PageDigest } from '../src/memory/page-digest.js';
import { ArgumentError } from '../src/errors/vmm-error-base.js';

/** A deterministic PRNG, so failures reproduce. */
function rng(seed: number): () => number {
  return () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed;
  };
}

function pages(count: number, seed: number): Uint8Array {
  const next = rng(seed);
  const bytes = new Uint8Array(count * DIGEST_PAGE_SIZE);
  for (let i = 0; i < bytes.length; i++) bytes[i] = next() >>> 24;
  return bytes;
}

const digests = (d: PageDigest, data: Uint8Array): number[] => {
  const out = new Uint32Array(data.byteLength / DIGEST_PAGE_SIZE);
  d.compute(data, out);
  return [...out];
};

describe('PageDigest', () => {
  const simd = new PageDigest();
  const js = new PageDigest({ forceJs: true });

  it('runs on WebAssembly SIMD here, and the JS fallback gives the same digests', () => {
    expect(simd.simd).toBe(true);
    expect(js.simd).toBe(false);
    // 37 pages: two full batches of 16 and a short one; a zero page and an all-ones page.
    const data = pages(37, 7);
    data.fill(0, 3 * DIGEST_PAGE_SIZE, 4 * DIGEST_PAGE_SIZE);
    data.fill(0xff, 20 * DIGEST_PAGE_SIZE, 21 * DIGEST_PAGE_SIZE);
    const want = digests(js, data);
    expect(digests(simd, data)).toEqual(want);
    expect(new Set(want).size).toBe(37);
    // A view at an offset, and into the middle of an output array.
    const out = new Uint32Array(40);
    simd.compute(data.subarray(5 * DIGEST_PAGE_SIZE, 9 * DIGEST_PAGE_SIZE), out, 30);
    expect([...out.subarray(30, 34)]).toEqual(want.slice(5, 9));
  });

  it('changes with every flipped bit, and with any change to one word', () => {
    for (const d of [simd, js]) {
      const page = pages(1, 99);
      const base = digests(d, page)[0];
      const next = rng(5);
      for (let bit = 0; bit < DIGEST_PAGE_SIZE * 8; bit += d === js ? 61 : 1) {
        page[bit >>> 3]! ^= 1 << (bit & 7);
        expect(digests(d, page)[0], `bit ${bit}`).not.toBe(base);
        page[bit >>> 3]! ^= 1 << (bit & 7);
      }
      const words = new DataView(page.buffer);
      for (let i = 0; i < 2000; i++) {
        const at = (next() % (DIGEST_PAGE_SIZE / 4)) * 4;
        const was = words.getUint32(at, true);
        words.setUint32(at, (was ^ (next() | 1)) >>> 0, true);
        expect(digests(d, page)[0]).not.toBe(base);
        words.setUint32(at, was, true);
      }
      expect(digests(d, page)[0]).toBe(base);
    }
  });

  it('tells apart pages with the same words in other places', () => {
    const page = new Uint8Array(DIGEST_PAGE_SIZE);
    const a = new Uint8Array(DIGEST_PAGE_SIZE);
    const b = new Uint8Array(DIGEST_PAGE_SIZE);
    a[0] = 1;
    b[4] = 1; // the next lane
    const c = new Uint8Array(DIGEST_PAGE_SIZE);
    c[128] = 1; // the same lane, next step
    const all = [page, a, b, c].map((p) => digests(simd, p)[0]);
    expect(new Set(all).size).toBe(4);
  });

  it('refuses what is not whole pages, and an output too short', () => {
    expect(() => simd.compute(new Uint8Array(100), new Uint32Array(1))).toThrow(ArgumentError);
    expect(() => simd.compute(new Uint8Array(2 * DIGEST_PAGE_SIZE), new Uint32Array(1))).toThrow(/2 digests do not fit at 0 of 1/);
  });
});
