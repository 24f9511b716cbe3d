// Where the guest put the BARs of the PCI functions on the bus: read from each function's config
// space (the BAR registers and the command register's decode enables), and the guest accesses
// that fall in one turned into the function's BAR reads and writes.

import { PCI_SLOTS, type PciBarAccessSize, type PciBus, type PciFunction } from '@vmmkit/core';
import { PCI_BASE_ADDRESS_0, PCI_BASE_ADDRESS_MEM_TYPE_64, PCI_BASE_ADDRESS_SPACE_IO, PCI_COMMAND, PCI_COMMAND_IO, PCI_COMMAND_MEMORY } from '@vmmkit/core/uapi';
import type { GuestAccess } from '../vcpu/io-handler.js';

/** One decoded BAR: guest addresses [start, end) of `bar` of the function in `slot`. */
export interface BarWindow {
  readonly slot: number;
  readonly fn: PciFunction;
  readonly bar: number;
  readonly space: 'mem' | 'io';
  readonly start: bigint;
  readonly end: bigint;
}

/** I/O space is 64 KiB on x86. */
const IO_SPACE = 0x1_0000n;

/** The decoded BARs of bus 0, re-read from config space when marked stale. */
export class BarWindows {
  #windows: BarWindow[] = [];
  #stale = true;
  #reading: Promise<void> | undefined;

  /** `onRead` hears every new reading of the windows (whoever maps BARs follows them). */
  constructor(private readonly bus: PciBus, private readonly onRead?: (windows: readonly BarWindow[]) => void) {}

  /** Read the BARs again before the next decode (after config writes, a restore, a plug). */
  invalidate(): void {
    this.#stale = true;
  }

  /** The windows as last read (for tests and messages). */
  get windows(): readonly BarWindow[] {
    return this.#windows;
  }

  /**
   * The windows now: read again first when stale.
   * @throws what a function's config read threw (the windows stay stale, read again next time).
   */
  async current(): Promise<readonly BarWindow[]> {
    await this.#current();
    return this.#windows;
  }

  /** Handle `a` when it falls in a BAR with its decode enabled; resolves whether it did. */
  async decode(space: 'mem' | 'io', a: GuestAccess): Promise<boolean> {
    await this.#current();
    const w = this.#windows.find((x) => x.space === space && a.addr >= x.start && a.addr < x.end);
    if (!w) return false;
    const offset = Number(a.addr - w.start);
    const size = a.size as PciBarAccessSize;
    if (a.addr + BigInt(size * a.count) > w.end) {
      // Straddling the BAR's end: nothing answers the part outside, so the access goes nowhere.
      if (!a.write) a.data.fill(0xff);
      return true;
    }
    const dv = new DataView(a.data.buffer, a.data.byteOffset, a.data.byteLength);
    for (let i = 0; i < a.count; i++) {
      const at = i * size;
      if (a.write) await w.fn.barWrite(w.bar, offset, size, readLittleEndian(dv, at, size));
      else writeLittleEndian(dv, at, size, await w.fn.barRead(w.bar, offset, size));
    }
    return true;
  }

  /** The windows, re-read first when stale (one reading at a time; later callers share it). */
  async #current(): Promise<void> {
    while (this.#stale || this.#reading) {
      if (!this.#reading) {
        this.#stale = false;
        this.#reading = this.#read().then(
          (w) => {
            this.#windows = w;
            this.onRead?.(w);
          },
          (e: unknown) => {
            // A function that could not be read is asked again at the next access.
            this.#stale = true;
            throw e;
          },
        ).finally(() => { this.#reading = undefined; });
      }
      await this.#reading;
    }
  }

  async #read(): Promise<BarWindow[]> {
    const out: BarWindow[] = [];
    for (let slot = 1; slot < PCI_SLOTS; slot++) {
      const fn = this.bus.function(slot);
      if (fn) out.push(...await functionWindows(slot, fn));
    }
    return out;
  }
}

/** The BARs of one function that decode now. */
async function functionWindows(slot: number, fn: PciFunction): Promise<BarWindow[]> {
  const command = await fn.configRead(PCI_COMMAND, 2);
  const out: BarWindow[] = [];
  for (let bar = 0; bar < 6; bar++) {
    const size = fn.barSize(bar);
    const low = size > 0n ? await fn.configRead(PCI_BASE_ADDRESS_0 + 4 * bar, 4) : 0;
    if (size === 0n) continue;
    if (low & PCI_BASE_ADDRESS_SPACE_IO) {
      const start = BigInt(low & ~0x3);
      if (command & PCI_COMMAND_IO && start !== 0n && start + size <= IO_SPACE) out.push({ slot, fn, bar, space: 'io', start, end: start + size });
      continue;
    }
    let start = BigInt(low & ~0xf) & 0xffff_ffffn;
    const wide = (low & 0x6) === PCI_BASE_ADDRESS_MEM_TYPE_64;
    if (wide && bar < 5) start |= BigInt(await fn.configRead(PCI_BASE_ADDRESS_0 + 4 * (bar + 1), 4) >>> 0) << 32n;
    if (command & PCI_COMMAND_MEMORY && start !== 0n) out.push({ slot, fn, bar, space: 'mem', start, end: start + size });
    if (wide) bar++;
  }
  return out;
}

function readLittleEndian(dv: DataView, at: number, size: number): bigint {
  switch (size) {
    case 1: return BigInt(dv.getUint8(at));
    case 2: return BigInt(dv.getUint16(at, true));
    case 4: return BigInt(dv.getUint32(at, true));
    default: return dv.getBigUint64(at, true);
  }
}

function writeLittleEndian(dv: DataView, at: number, size: number, v: bigint): void {
  switch (size) {
    case 1: return dv.setUint8(at, Number(v & 0xffn));
    case 2: return dv.setUint16(at, Number(v & 0xffffn), true);
    case 4: return dv.setUint32(at, Number(v & 0xffff_ffffn), true);
    default: return dv.setBigUint64(at, BigInt.asUintN(64, v), true);
  }
}
