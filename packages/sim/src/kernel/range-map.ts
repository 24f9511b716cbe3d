// Non-overlapping address intervals [start, last] (inclusive, as the kernel's interval trees),
// kept sorted: IOAS areas, type1 DMA mappings, user mappings.

import { InvariantError } from '@vmmkit/core';

/** One interval and what it holds. */
export interface Range<T> {
  readonly start: bigint;
  /** The last address inside the interval (inclusive). */
  readonly last: bigint;
  readonly value: T;
}

/** A sorted set of non-overlapping intervals with logarithmic lookup. */
export class RangeMap<T> implements Iterable<Range<T>> {
  #items: Range<T>[] = [];

  get size(): number {
    return this.#items.length;
  }

  /** Add an interval; throws if it overlaps one already present (callers decide the errno first). */
  insert(start: bigint, last: bigint, value: T): Range<T> {
    if (last < start) throw new InvariantError(`empty interval [0x${start.toString(16)}, 0x${last.toString(16)}]`);
    const i = this.#firstEndingAtOrAfter(start);
    if (i < this.#items.length && this.#items[i]!.start <= last) {
      throw new InvariantError(`interval [0x${start.toString(16)}, 0x${last.toString(16)}] overlaps an existing one`);
    }
    const range = { start, last, value };
    this.#items.splice(i, 0, range);
    return range;
  }

  /** Remove an interval previously returned by insert or a lookup. */
  delete(range: Range<T>): void {
    const i = this.#firstEndingAtOrAfter(range.start);
    if (this.#items[i] !== range) throw new InvariantError('RangeMap.delete: interval not present');
    this.#items.splice(i, 1);
  }

  /** The interval containing `addr`. */
  find(addr: bigint): Range<T> | undefined {
    const r = this.#items[this.#firstEndingAtOrAfter(addr)];
    return r && r.start <= addr ? r : undefined;
  }

  /** Every interval that intersects [start, last], in address order. */
  overlapping(start: bigint, last: bigint): Range<T>[] {
    const out: Range<T>[] = [];
    for (let i = this.#firstEndingAtOrAfter(start); i < this.#items.length; i++) {
      const r = this.#items[i]!;
      if (r.start > last) break;
      out.push(r);
    }
    return out;
  }

  /** True when [start, last] is covered by intervals with no gap between them. */
  covers(start: bigint, last: bigint): boolean {
    let next = start;
    for (const r of this.overlapping(start, last)) {
      if (r.start > next) return false;
      if (r.last >= last) return true;
      next = r.last + 1n;
    }
    return false;
  }

  clear(): void {
    this.#items = [];
  }

  [Symbol.iterator](): Iterator<Range<T>> {
    return this.#items[Symbol.iterator]();
  }

  /** Index of the first interval whose last address is >= addr. */
  #firstEndingAtOrAfter(addr: bigint): number {
    let lo = 0;
    let hi = this.#items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#items[mid]!.last < addr) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
