// The guest's side of PCI, played over qtest: configuration mechanism #1 (address to 0xcf8, data
// at 0xcfc..0xcff), enumeration of bus 0, BAR sizing and programming as firmware does it, and
// the command register. Nothing here knows a particular device.

import { QemuPeerError } from './peer-error.js';
import type { QtestClient } from './qtest-client.js';

const CONFIG_ADDRESS = 0xcf8;
const CONFIG_DATA = 0xcfc;

export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_REVISION = 0x08;
export const PCI_CLASS_PROG = 0x09;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_BAR0 = 0x10;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_INTERRUPT_PIN = 0x3d;

export const PCI_COMMAND_IO = 0x1;
export const PCI_COMMAND_MEMORY = 0x2;
export const PCI_COMMAND_MASTER = 0x4;
export const PCI_COMMAND_INTX_DISABLE = 0x400;
export const PCI_STATUS_CAP_LIST = 0x10;
export const PCI_STATUS_INTERRUPT = 0x08;

export const PCI_CAP_ID_MSI = 0x05;
export const PCI_CAP_ID_MSIX = 0x11;

/** A BAR as the guest found it by sizing. */
export interface GuestBar {
  readonly index: number;
  readonly type: 'io' | 'mem32' | 'mem64';
  readonly prefetchable: boolean;
  readonly size: bigint;
  /** Where the guest put it (undefined until `assignBars`). */
  address?: bigint;
}

/** Where this guest puts memory BARs: q35's PCI hole below the I/O APIC (libqos uses the same window). */
const MMIO_WINDOW = { start: 0xe000_0000n, end: 0xfec0_0000n };
const IO_WINDOW = { start: 0xc000n, end: 0x1_0000n };

/** One PCI function on bus 0, reached through the configuration ports. */
export class PciFunction {
  constructor(readonly qtest: QtestClient, readonly slot: number, readonly fn = 0) {}

  get bdf(): string {
    return `00:${this.slot.toString(16).padStart(2, '0')}.${this.fn}`;
  }

  #address(offset: number): number {
    return (0x8000_0000 | (this.slot << 11) | (this.fn << 8) | (offset & 0xfc)) >>> 0;
  }

  async read8(offset: number): Promise<number> {
    await this.qtest.outl(CONFIG_ADDRESS, this.#address(offset));
    return this.qtest.inb(CONFIG_DATA + (offset & 3));
  }

  async read16(offset: number): Promise<number> {
    await this.qtest.outl(CONFIG_ADDRESS, this.#address(offset));
    return this.qtest.inw(CONFIG_DATA + (offset & 2));
  }

  async read32(offset: number): Promise<number> {
    await this.qtest.outl(CONFIG_ADDRESS, this.#address(offset));
    return (await this.qtest.inl(CONFIG_DATA)) >>> 0;
  }

  async write8(offset: number, value: number): Promise<void> {
    await this.qtest.outl(CONFIG_ADDRESS, this.#address(offset));
    await this.qtest.outb(CONFIG_DATA + (offset & 3), value);
  }

  async write16(offset: number, value: number): Promise<void> {
    await this.qtest.outl(CONFIG_ADDRESS, this.#address(offset));
    await this.qtest.outw(CONFIG_DATA + (offset & 2), value);
  }

  async write32(offset: number, value: number): Promise<void> {
    await this.qtest.outl(CONFIG_ADDRESS, this.#address(offset));
    await this.qtest.outl(CONFIG_DATA, value);
  }

  /** The offsets of the capabilities in the standard list, by id (the first of each id). */
  async capabilities(): Promise<Map<number, number>> {
    const caps = new Map<number, number>();
    if (!((await this.read16(PCI_STATUS)) & PCI_STATUS_CAP_LIST)) return caps;
    let at = (await this.read8(PCI_CAPABILITY_LIST)) & 0xfc;
    for (let hops = 0; at !== 0 && hops < 48; hops++) {
      const id = await this.read8(at);
      if (!caps.has(id)) caps.set(id, at);
      at = (await this.read8(at + 1)) & 0xfc;
    }
    return caps;
  }

  /** Sizes every BAR as firmware does: write all ones, read back the mask, restore. */
  async sizeBars(): Promise<GuestBar[]> {
    const bars: GuestBar[] = [];
    for (let index = 0; index < 6; index++) {
      const offset = PCI_BAR0 + index * 4;
      const original = await this.read32(offset);
      await this.write32(offset, 0xffff_ffff);
      const mask = await this.read32(offset);
      await this.write32(offset, original);
      if (mask === 0) continue;
      if (original & 1) {
        bars.push({ index, type: 'io', prefetchable: false, size: BigInt(((~(mask & ~3)) & 0xffff) + 1) });
        continue;
      }
      const is64 = ((original >> 1) & 3) === 2;
      let sizeMask = BigInt(mask & ~0xf) | (is64 ? 0n : 0xffff_ffff_0000_0000n);
      if (is64) {
        const upper = await this.read32(offset + 4);
        await this.write32(offset + 4, 0xffff_ffff);
        sizeMask |= BigInt(await this.read32(offset + 4)) << 32n;
        await this.write32(offset + 4, upper);
      }
      bars.push({ index, type: is64 ? 'mem64' : 'mem32', prefetchable: (original & 8) !== 0, size: BigInt.asUintN(64, ~sizeMask) + 1n });
      if (is64) index++;
    }
    return bars;
  }

  /** Sizes the BARs and gives each an address (naturally aligned) in q35's windows. */
  async assignBars(): Promise<GuestBar[]> {
    const bars = await this.sizeBars();
    let mmio = MMIO_WINDOW.start;
    let io = IO_WINDOW.start;
    for (const bar of bars) {
      const window = bar.type === 'io' ? IO_WINDOW : MMIO_WINDOW;
      const base = alignUp(bar.type === 'io' ? io : mmio, bar.size);
      if (base + bar.size > window.end) throw new QemuPeerError(`${this.bdf}: BAR${bar.index} (${bar.size} bytes) does not fit the guest's window`);
      const offset = PCI_BAR0 + bar.index * 4;
      await this.write32(offset, Number(base & 0xffff_ffffn));
      if (bar.type === 'mem64') await this.write32(offset + 4, Number(base >> 32n));
      bar.address = base;
      if (bar.type === 'io') io = base + bar.size;
      else mmio = base + bar.size;
    }
    return bars;
  }

  /**
   * Enables MSI-X with vector `vector`'s message a write of `data` to `address` (the table lives
   * in a BAR the guest already placed, at `tableBar`). Other vectors stay masked.
   */
  async enableMsix(bars: readonly GuestBar[], vector: number, address: bigint, data: number): Promise<void> {
    const at = (await this.capabilities()).get(PCI_CAP_ID_MSIX);
    if (at === undefined) throw new QemuPeerError(`${this.bdf}: no MSI-X capability`);
    const control = await this.read16(at + 2);
    const tableSize = (control & 0x7ff) + 1;
    if (vector >= tableSize) throw new QemuPeerError(`${this.bdf}: MSI-X vector ${vector} beyond its table of ${tableSize}`);
    const table = await this.read32(at + 4);
    const bar = bars.find((b) => b.index === (table & 7));
    if (bar?.address === undefined) throw new QemuPeerError(`${this.bdf}: the MSI-X table's BAR${table & 7} is not placed`);
    // Enable with the function masked while the table is written, as drivers do.
    await this.write16(at + 2, control | 0xc000);
    const base = bar.address + BigInt(table & ~7);
    for (let v = 0; v < tableSize; v++) await this.qtest.writel(base + BigInt(v * 16 + 12), 1);
    const entry = base + BigInt(vector * 16);
    await this.qtest.writel(entry, Number(address & 0xffff_ffffn));
    await this.qtest.writel(entry + 4n, Number(address >> 32n));
    await this.qtest.writel(entry + 8n, data);
    await this.qtest.writel(entry + 12n, 0);
    await this.write16(at + 2, (control | 0x8000) & ~0x4000);
  }

  /** Sets bits in the command register (memory and I/O decoding, bus mastering). */
  async enable(bits: number): Promise<void> {
    await this.write16(PCI_COMMAND, (await this.read16(PCI_COMMAND)) | bits);
  }
}

/** Every function on bus 0 that answers, by slot (function 0 only unless multi-function). */
export async function scanBus0(qtest: QtestClient): Promise<{ fn: PciFunction; vendor: number; device: number }[]> {
  const found: { fn: PciFunction; vendor: number; device: number }[] = [];
  for (let slot = 0; slot < 32; slot++) {
    for (let f = 0; f < 8; f++) {
      const fn = new PciFunction(qtest, slot, f);
      const id = await fn.read32(PCI_VENDOR_ID);
      if ((id & 0xffff) === 0xffff) {
        if (f === 0) break;
        continue;
      }
      found.push({ fn, vendor: id & 0xffff, device: id >>> 16 });
      if (f === 0 && !((await fn.read8(PCI_HEADER_TYPE)) & 0x80)) break;
    }
  }
  return found;
}

/** The function with these ids on bus 0; fails naming the ids when there is none. */
export async function findFunction(qtest: QtestClient, vendor: number, device: number): Promise<PciFunction> {
  const hit = (await scanBus0(qtest)).find((f) => f.vendor === vendor && f.device === device);
  if (!hit) throw new QemuPeerError(`no PCI function ${vendor.toString(16)}:${device.toString(16)} on bus 0`);
  return hit.fn;
}

function alignUp(value: bigint, align: bigint): bigint {
  return (value + align - 1n) / align * align;
}
