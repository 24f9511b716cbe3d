// Numbers in words for people, shared by the demo, the CLI and the report: binary units
// (MiB, as QEMU and --memory use), counts with thousands separators, times in ms or s.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** `1536` → `1.5 KiB`; bigints for sizes beyond 2^53. */
export function formatBytes(bytes: number | bigint): string {
  let value = Number(bytes);
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${value} B`;
  return `${Number.isInteger(value) ? value : value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`;
}

/** Bytes per second → `32.0 MiB/s`. */
export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(bytesPerSecond)}/s`;
}

/** `1 pass`, `4 passes`: a count and its noun, plural when it is not one. */
export function countOf(n: number, one: string, many = `${one}s`): string {
  return `${formatCount(n)} ${n === 1 ? one : many}`;
}

/** `12345` → `12,345`. */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** A duration: `0 ms`, `8.5 ms`, `842 ms`, `4.52 s`, `12.4 s`; `∞` for an estimate without a measurement yet. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '∞';
  // Number(toFixed()) drops trailing zeros: `2 s`, not `2.00 s`.
  if (ms >= 10_000) return `${Number((ms / 1000).toFixed(1))} s`;
  if (ms >= 1000) return `${Number((ms / 1000).toFixed(2))} s`;
  return ms >= 100 ? `${Math.round(ms)} ms` : `${Number(ms.toFixed(1))} ms`;
}
