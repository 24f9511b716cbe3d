// The eventfds a vfio-pci device's BARs want signalled for guest writes (PciFunction.barEventfds):
// asked of the device's I/O once per BAR at realize (vfio-user's DEVICE_GET_REGION_IO_FDS; the
// kernel's I/O has none), owned here and closed at unrealize.

import { FirstFailure, vfioClose, type HostKernel, type PciBarAccessSize, type PciBarEventfd, type VfioDeviceIo, type VfioRegionIoEventfd } from '@vmmkit/core';

const WIDTHS: readonly number[] = [1, 2, 4, 8];

/** The BARs' eventfds of one device. */
export class BarEventfds {
  readonly #bars = new Map<number, readonly PciBarEventfd[]>();
  /** Every fd held, each once (sub-regions may share one). */
  readonly #fds = new Set<number>();

  private constructor(private readonly host: HostKernel, private readonly device: string) {}

  /**
   * Ask `io` for the eventfds of each BAR with a size (`sizes[bar]`). Entries a PCI function
   * cannot offer are dropped with a warning and their fds closed: one outside its BAR, one of any
   * width (size 0) or port I/O (PciBarEventfd has a width and the BAR's kind decides), a datamatch
   * wider than the write. On failure what was fetched is closed and the VfioError thrown.
   */
  static async fetch(host: HostKernel, io: VfioDeviceIo, device: string, sizes: readonly bigint[], warn: (message: string) => void): Promise<BarEventfds> {
    const result = new BarEventfds(host, device);
    if (!io.regionIoEventfds) return result;
    try {
      for (let bar = 0; bar < 6; bar++) {
        if (!sizes[bar]) continue;
        const entries = await io.regionIoEventfds(bar);
        result.#adopt(bar, sizes[bar]!, entries, warn);
      }
    } catch (e) {
      result.close();
      throw e;
    }
    return result;
  }

  /** BAR `bar`'s eventfds (none for a BAR without). Valid until `close`. */
  of(bar: number): readonly PciBarEventfd[] {
    return this.#bars.get(bar) ?? [];
  }

  /** Close every fd (idempotent); throws the first close that failed, after closing the rest. */
  close(): void {
    const errors = new FirstFailure();
    for (const fd of this.#fds) errors.run(() => vfioClose(this.host, fd, 'a BAR ioeventfd', this.device));
    this.#fds.clear();
    this.#bars.clear();
    errors.rethrow();
  }

  #adopt(bar: number, size: bigint, entries: readonly VfioRegionIoEventfd[], warn: (message: string) => void): void {
    const kept: PciBarEventfd[] = [];
    for (const e of entries) {
      const why = unusable(e, size);
      if (why) {
        warn(`${this.device}: BAR${bar} ioeventfd at 0x${e.offset.toString(16)} not used: ${why}`);
        continue;
      }
      kept.push({ offset: e.offset, size: e.size as PciBarAccessSize, fd: e.fd, ...(e.datamatch === undefined ? {} : { datamatch: e.datamatch }) });
    }
    const used = new Set(kept.map((k) => k.fd));
    for (const fd of new Set(entries.map((e) => e.fd))) {
      if (used.has(fd)) this.#fds.add(fd);
      else if (!this.#fds.has(fd)) {
        try {
          this.host.close(fd);
        } catch {
          // close(2) frees the descriptor even when it fails.
        }
      }
    }
    if (kept.length) this.#bars.set(bar, kept);
  }
}

function unusable(e: VfioRegionIoEventfd, barSize: bigint): string | undefined {
  if (e.pio) return 'a port I/O ioeventfd';
  if (!WIDTHS.includes(e.size)) return `width ${e.size} (any-width ioeventfds are not offered)`;
  if (e.offset + BigInt(e.size) > barSize) return `outside the BAR's ${barSize} bytes`;
  if (e.datamatch !== undefined && e.datamatch >= 1n << BigInt(8 * e.size)) return `datamatch 0x${e.datamatch.toString(16)} is wider than ${e.size} bytes`;
  return undefined;
}
