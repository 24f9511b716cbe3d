// IOVA ranges a container may map ([start, last], inclusive like the kernel reports them).

export interface IovaRange {
  readonly start: bigint;
  readonly last: bigint;
}

/** The full 64-bit IOVA space: what a container assumes when the kernel reports no ranges. */
export const FULL_IOVA_RANGE: IovaRange = { start: 0n, last: 0xffff_ffff_ffff_ffffn };

/** True when [iova, iova + size) lies inside one of `ranges`. */
export function iovaRangeAllowed(ranges: readonly IovaRange[], iova: bigint, size: bigint): boolean {
  const last = iova + size - 1n;
  return ranges.some((r) => iova >= r.start && last <= r.last);
}
