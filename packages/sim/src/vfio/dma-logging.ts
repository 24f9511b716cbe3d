// A device's DMA logging (device dirty tracking) as a migration driver's log_ops implement it
// (mlx5's page tracker, pds's dirty log): logged IOVA ranges, one dirty bit per tracked page for
// every device write inside them, and read-and-clear into a user bitmap of any page size.

import { SparseBitmap, setUserBits } from '../iommu/sparse-bitmap.js';
import type { Census } from '../kernel/census.js';
import { fail } from '../kernel/sim-errno.js';
import type { UserMemory } from '../memory/user-memory.js';
import { RangeMap } from '../kernel/range-map.js';

/** Tracking granularity the device supports, and how much IOVA space it can track at once. */
export const DMA_LOG_MIN_PAGE_SHIFT = 12;
export const DMA_LOG_MAX_PAGE_SHIFT = 30;
export const DMA_LOG_MAX_ADDRESS_SPACE = 1n << 48n;
/** Ranges the device tracks separately; more are merged across their smallest gaps. */
export const DMA_LOG_DEVICE_RANGES = 32;

/** An IOVA range to log: [iova, iova + length). */
export interface LogRange {
  readonly iova: bigint;
  readonly length: bigint;
}

interface Tracker {
  readonly shift: bigint;
  readonly ranges: RangeMap<true>;
  readonly dirty: SparseBitmap;
}

/** Where a DMA log sees the device's completed writes, and where it counts itself. */
export interface DmaLoggingContext {
  /** The device's write observers: called with (iova, length) after every completed DMA write. */
  readonly writeObservers: Set<(iova: bigint, length: number) => void>;
  readonly census: Census;
}

/**
 * The DMA log of one device. The simulated kernel's vfio-pci drives it through ioctls; a
 * vfio-user server drives the same log through DEVICE_FEATURE messages.
 */
export class DmaLogging {
  #tracker: Tracker | undefined;
  readonly #observe = (iova: bigint, length: number): void => this.#logged(iova, BigInt(length));

  constructor(private readonly context: DmaLoggingContext) {}

  get active(): boolean {
    return this.#tracker !== undefined;
  }

  /** log_start: track writes in `ranges` (disjoint). Returns the page size chosen. */
  start(ranges: readonly LogRange[], pageSize: bigint): bigint {
    if (this.#tracker) fail('EINVAL', 'DMA logging is already started');
    // Like mlx5: the hint rounded down to a power of two, clamped to what the tracker supports.
    const hinted = pageSize > 0n ? pageSize.toString(2).length - 1 : 0;
    const shift = BigInt(Math.min(Math.max(hinted, DMA_LOG_MIN_PAGE_SHIFT), DMA_LOG_MAX_PAGE_SHIFT));
    const merged = combineRanges(ranges, DMA_LOG_DEVICE_RANGES);
    const span = merged.reduce((n, r) => n + r.length, 0n);
    if (span > DMA_LOG_MAX_ADDRESS_SPACE) fail('EOPNOTSUPP', `the device tracks at most ${DMA_LOG_MAX_ADDRESS_SPACE} bytes of IOVA, asked for ${span}`);
    const map = new RangeMap<true>();
    for (const r of merged) map.insert(r.iova, r.iova + r.length - 1n, true);
    this.#tracker = { shift, ranges: map, dirty: new SparseBitmap() };
    this.context.writeObservers.add(this.#observe);
    this.context.census.add('dma_logging');
    return 1n << shift;
  }

  /** log_stop: no error when logging was not started. */
  stop(): void {
    if (!this.#tracker) return;
    this.context.writeObservers.delete(this.#observe);
    this.#tracker = undefined;
    this.context.census.remove('dma_logging');
  }

  /**
   * log_read_and_clear into the user bitmap at `bitmap`: one bit per `pageSize` of
   * [iova, iova + length), only ever set. EFAULT when the bitmap is not writable user memory,
   * EINVAL when logging is off.
   */
  report(iova: bigint, length: bigint, pageSize: bigint, bitmap: bigint, memory: UserMemory): void {
    const shift = BigInt(pageSize.toString(2).length - 1);
    // iova_bitmap pins the whole bitmap the range needs, in u64 words.
    const words = ((length - 1n) >> shift) / 64n + 1n;
    const spans = memory.resolve(bitmap, Number(words * 8n), 'write');
    this.reportInto(iova, length, pageSize, spans.map((s) => s.backing.view(s.offset, s.length)));
  }

  /**
   * log_read_and_clear into `views` (the bitmap's bytes, in order, zeroed by the caller): one bit
   * per `pageSize` (a power of two) of [iova, iova + length). EINVAL when logging is off.
   */
  reportInto(iova: bigint, length: bigint, pageSize: bigint, views: readonly Uint8Array[]): void {
    const shift = BigInt(pageSize.toString(2).length - 1);
    const t = this.#tracker;
    if (!t) fail('EINVAL', 'DMA logging is not started');
    const end = iova + length;
    const first = Number(iova >> t.shift);
    const count = Number(((end - 1n) >> t.shift) - (iova >> t.shift)) + 1;
    t.dirty.forEachRun(first, count, (start, n) => {
      const lo = maxBig(BigInt(start) << t.shift, iova);
      const hi = minBig(BigInt(start + n) << t.shift, end);
      const bit = (lo - iova) >> shift;
      setUserBits(views, Number(bit), Number(((hi - 1n - iova) >> shift) - bit) + 1);
    });
    // Clear only tracked pages wholly inside the range: a partly covered page stays dirty.
    const clearFirst = Number((iova + (1n << t.shift) - 1n) >> t.shift);
    const clearEnd = Number(end >> t.shift);
    if (clearEnd <= clearFirst) return;
    const runs: [number, number][] = [];
    t.dirty.forEachRun(clearFirst, clearEnd - clearFirst, (start, n) => runs.push([start, n]));
    for (const [start, n] of runs) t.dirty.clearRange(start, n);
  }

  /** A completed device write: mark the tracked pages it touched inside the logged ranges. */
  #logged(iova: bigint, length: bigint): void {
    const t = this.#tracker!;
    const last = iova + length - 1n;
    for (const r of t.ranges.overlapping(iova, last)) {
      const lo = maxBig(r.start, iova) >> t.shift;
      const hi = minBig(r.last, last) >> t.shift;
      t.dirty.setRange(Number(lo), Number(hi - lo) + 1);
    }
  }
}

/** vfio_combine_iova_ranges: merge neighbours across the smallest gaps until at most `max` remain. */
export function combineRanges(ranges: readonly LogRange[], max: number): LogRange[] {
  const out = [...ranges].sort((a, b) => (a.iova < b.iova ? -1 : a.iova > b.iova ? 1 : 0));
  while (out.length > max) {
    let best = 0;
    for (let i = 1; i < out.length - 1; i++) {
      if (gapAfter(out, i) < gapAfter(out, best)) best = i;
    }
    const a = out[best]!;
    const b = out[best + 1]!;
    out.splice(best, 2, { iova: a.iova, length: b.iova + b.length - a.iova });
  }
  return out;
}

function gapAfter(ranges: readonly LogRange[], i: number): bigint {
  return ranges[i + 1]!.iova - (ranges[i]!.iova + ranges[i]!.length);
}

const maxBig = (a: bigint, b: bigint): bigint => (a > b ? a : b);
const minBig = (a: bigint, b: bigint): bigint => (a < b ? a : b);
