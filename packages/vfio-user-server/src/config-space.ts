// The device's PCI configuration space as the hardware answers it: which bits a write may change
// (read-only IDs, command bits, BAR sizing, the MSI / MSI-X control words, PCIe device control
// with function level reset), the checks a model's BARs imply. vfio-user carries raw config
// accesses, so the server plays the role real hardware plays behind vfio-pci.

import type { SimPciModel } from '@vmmkit/sim';
import {
  PCI_BASE_ADDRESS_0, PCI_CACHE_LINE_SIZE, PCI_CAP_ID_EXP, PCI_CAP_ID_MSI, PCI_CAP_ID_MSIX, PCI_COMMAND,
  PCI_EXP_DEVCTL, PCI_EXP_DEVCTL_BCR_FLR, PCI_INTERRUPT_LINE, PCI_LATENCY_TIMER, PCI_MSI_FLAGS, PCI_MSI_FLAGS_64BIT,
  PCI_MSIX_FLAGS, findCapability,
} from '@vmmkit/core/uapi';

/** The command register bits a function implements: I/O, memory, bus master, SERR, INTx disable. */
const COMMAND_WRITABLE = 0x0001 | 0x0002 | 0x0004 | 0x0040 | 0x0100 | 0x0400;

/** A model's configuration space with hardware write semantics. */
export class ConfigSpace {
  /** 1 bits: writable bits of each byte. */
  readonly #mask: Uint8Array;
  /** BAR register offsets → the size mask its address bits obey. */
  readonly #bars = new Map<number, { readonly low: bigint; readonly type: string; readonly upper: boolean }>();
  readonly #devctl: number;

  constructor(private readonly model: SimPciModel, private readonly onFlr: () => void) {
    const config = model.config;
    this.#mask = new Uint8Array(config.byteLength);
    this.#set(PCI_COMMAND, 2, COMMAND_WRITABLE);
    this.#set(PCI_CACHE_LINE_SIZE, 1, 0xff);
    this.#set(PCI_LATENCY_TIMER, 1, 0xff);
    this.#set(PCI_INTERRUPT_LINE, 1, 0xff);
    for (const bar of model.bars) {
      const reg = PCI_BASE_ADDRESS_0 + 4 * bar.index;
      this.#bars.set(reg, { low: bar.size, type: bar.type, upper: false });
      if (bar.type === 'mem64') this.#bars.set(reg + 4, { low: bar.size, type: bar.type, upper: true });
    }
    const msi = findCapability(config, PCI_CAP_ID_MSI);
    if (msi) {
      // Enable and multiple-message enable; address and data.
      this.#set(msi + PCI_MSI_FLAGS, 2, 0x0071);
      const is64 = (config[msi + PCI_MSI_FLAGS]! & PCI_MSI_FLAGS_64BIT) !== 0;
      this.#mask.fill(0xff, msi + 4, msi + (is64 ? 12 : 8));
      this.#set(msi + (is64 ? 12 : 8), 2, 0xffff);
    }
    const msix = findCapability(config, PCI_CAP_ID_MSIX);
    if (msix) this.#set(msix + PCI_MSIX_FLAGS, 2, 0xc000);
    const exp = findCapability(config, PCI_CAP_ID_EXP);
    this.#devctl = exp ? exp + PCI_EXP_DEVCTL : 0;
    if (exp) this.#set(this.#devctl, 2, 0x7fff | PCI_EXP_DEVCTL_BCR_FLR);
  }

  get size(): number {
    return this.model.config.byteLength;
  }

  read(offset: number, into: Uint8Array): void {
    into.set(this.model.config.subarray(offset, offset + into.byteLength));
  }

  /** Apply a write of `data` at `offset` (bounds checked by the caller). */
  write(offset: number, data: Uint8Array): void {
    const config = this.model.config;
    let flr = false;
    for (let i = 0; i < data.byteLength; i++) {
      const at = offset + i;
      const reg = at & ~3;
      const bar = this.#bars.get(reg);
      if (bar) {
        this.#writeBarByte(reg, at & 3, data[i]!, bar);
        continue;
      }
      const m = this.#mask[at]!;
      if (this.#devctl && at === this.#devctl + 1 && data[i]! & 0x80) flr = true;
      config[at] = (config[at]! & ~m) | (data[i]! & m);
    }
    // Initiate FLR reads back as 0: it is an action, not a state.
    if (this.#devctl) config[this.#devctl + 1] = config[this.#devctl + 1]! & 0x7f;
    this.model.configWritten?.(offset, data.byteLength);
    if (flr) this.onFlr();
  }

  /**
   * A byte of a BAR register: the address bits below the BAR's size read as zero (so writing all
   * ones reads back the size), the type bits never change.
   */
  #writeBarByte(reg: number, byte: number, value: number, bar: { low: bigint; type: string; upper: boolean }): void {
    const config = this.model.config;
    const dv = new DataView(config.buffer, config.byteOffset);
    const old = dv.getUint32(reg, true);
    const shift = byte * 8;
    let next = ((old & ~(0xff << shift)) | (value << shift)) >>> 0;
    const sizeMask = BigInt.asUintN(64, ~(bar.low - 1n));
    if (bar.upper) next = Number(BigInt(next) & (sizeMask >> 32n)) >>> 0;
    else {
      const flags = bar.type === 'io' ? 0x3 : 0xf;
      next = ((Number(sizeMask & 0xffff_ffffn) & next & ~flags) | (old & flags)) >>> 0;
    }
    dv.setUint32(reg, next, true);
  }

  #set(offset: number, length: number, bits: number): void {
    for (let i = 0; i < length; i++) this.#mask[offset + i] = (bits >>> (8 * i)) & 0xff;
  }
}
