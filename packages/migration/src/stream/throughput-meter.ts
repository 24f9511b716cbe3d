// Throughput measurement: bytes over elapsed wall-clock time, for migration progress, bandwidth
// estimates and benchmarks.

/** Measures bytes per second from the moment it is created (or restarted). */
export class ThroughputMeter {
  #start = performance.now();
  #bytes = 0;

  /** Count `bytes` more as transferred. */
  add(bytes: number): void {
    this.#bytes += bytes;
  }

  /** Bytes counted since the start. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Milliseconds since the start. */
  get elapsedMs(): number {
    return performance.now() - this.#start;
  }

  /** Bytes per second since the start (0 before any time has passed). */
  get bytesPerSecond(): number {
    const ms = this.elapsedMs;
    return ms > 0 ? (this.#bytes * 1000) / ms : 0;
  }

  /** Start over: zero bytes, time from now. */
  restart(): void {
    this.#start = performance.now();
    this.#bytes = 0;
  }

  /** A rate for people: `1.23 GiB/s`. */
  static format(bytesPerSecond: number): string {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let value = bytesPerSecond;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit++;
    }
    return `${value.toFixed(unit === 0 ? 0 : 2)} ${units[unit]}/s`;
  }
}
