// Human-readable quantities for progress and reports.

const BINARY = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** `1536` → `1.5 KiB`; bigints for sizes beyond 2^53. */
export function formatBytes(bytes: number | bigint): string {
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < BINARY.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${BINARY[unit]}`;
}

/** Bytes per second as `MiB/s`. */
export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(Math.round(bytesPerSecond))}/s`;
}

/** Milliseconds with at most one decimal; `∞` for an estimate made before anything was measured. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '∞';
  return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
}
