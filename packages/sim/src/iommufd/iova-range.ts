// Inclusive IOVA intervals and the span walks of include/linux/interval_tree.h that iommufd uses
// to find holes (interval_tree_for_each_span over the reserved, allowed and area trees).

/** An inclusive IOVA interval [start, last]. */
export interface IovaRange {
  readonly start: bigint;
  readonly last: bigint;
}

export const U64_MAX = 0xffff_ffff_ffff_ffffn;
/** The host's PAGE_SIZE (x86_64 and arm64 4K kernels). */
export const PAGE_SIZE = 4096n;
/** HPAGE_SIZE of those kernels (PMD-sized transparent huge pages, CONFIG_TRANSPARENT_HUGEPAGE). */
export const HPAGE_SIZE = 2n << 20n;

/** True when [a] and [b] share an address. */
export function intersects(a: IovaRange, b: IovaRange): boolean {
  return a.start <= b.last && b.start <= a.last;
}

/** The parts of [from, to] that no range of `used` covers (the "holes" of a span walk), in order. */
export function holesOf(used: Iterable<IovaRange>, from: bigint, to: bigint): IovaRange[] {
  const sorted = [...used].filter((r) => r.last >= from && r.start <= to).sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const holes: IovaRange[] = [];
  let next = from;
  for (const r of sorted) {
    if (r.start > next) holes.push({ start: next, last: r.start - 1n });
    if (r.last >= to) return holes;
    if (r.last + 1n > next) next = r.last + 1n;
  }
  if (next <= to) holes.push({ start: next, last: to });
  return holes;
}

/** ALIGN(v, a) for a power of two `a`. */
export function alignUp(v: bigint, a: bigint): bigint {
  return (v + a - 1n) & ~(a - 1n);
}

/** The lowest set bit of a non-zero value (1 << __ffs(v)). */
export function lowestBit(v: bigint): bigint {
  return v & -v;
}

/** roundup_pow_of_two(v) for v >= 1. */
export function roundupPow2(v: bigint): bigint {
  let p = 1n;
  while (p < v) p <<= 1n;
  return p;
}

/** Hex for messages. */
export function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}
