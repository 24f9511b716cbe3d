// vfio-pci's view of a device's configuration space: the virtual copy (vconfig), BAR sizing by
// writing all-ones, the command register's memory/INTx-disable handling, and accesses chopped
// into aligned chunks (drivers/vfio/pci/vfio_pci_config.c).

import type { SimPciModel } from '../devices/pci-model.js';
import {
  PCI_BASE_ADDRESS_0, PCI_BASE_ADDRESS_5, PCI_BASE_ADDRESS_MEM_PREFETCH, PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_BASE_ADDRESS_SPACE_IO, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, PCI_COMMAND_IO, PCI_COMMAND_MEMORY,
  PCI_CAP_ID_EXP, PCI_EXP_DEVCAP, PCI_EXP_DEVCAP_FLR, PCI_EXP_DEVCTL, PCI_EXP_DEVCTL_BCR_FLR, PCI_INTERRUPT_PIN,
  PCI_ROM_ADDRESS, findCapability,
} from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import { configPerms, type ConfigPerms } from './pci-config-perms.js';

/** What the configuration space tells the rest of vfio-pci about. */
export interface ConfigEvents {
  /** The user set or cleared the (virtual) INTx disable bit. */
  intxDisable(disabled: boolean): void;
  /** The user wrote Initiate Function Level Reset to a device that supports FLR. */
  flr(): void;
}

/** The virtualized configuration space of an open device. */
export class VfioPciConfig {
  /** vfio-pci's virtual copy: the bits `perms.virt` marks are read from and written to here. */
  readonly vconfig: Uint8Array;
  readonly #perms: ConfigPerms;
  /** Device control of the PCIe capability, 0 for a conventional PCI device. */
  readonly #devctl: number;
  #barDirty = true;
  #virqDisabled = false;

  constructor(
    private readonly model: SimPciModel,
    private readonly events: ConfigEvents,
  ) {
    this.vconfig = model.config.slice();
    this.#perms = configPerms(model.config);
    const exp = findCapability(model.config, PCI_CAP_ID_EXP);
    this.#devctl = exp ? exp + PCI_EXP_DEVCTL : 0;
    if (!model.interrupts.intx) this.vconfig[PCI_INTERRUPT_PIN] = 0;
  }

  get size(): number {
    return this.vconfig.byteLength;
  }

  /** Memory decoding as the user last set it (vfio-pci refuses BAR access while it is off). */
  get memoryEnabled(): boolean {
    return (this.#vword(PCI_COMMAND) & PCI_COMMAND_MEMORY) !== 0;
  }

  /** Whether the user disabled INTx through the command register. */
  get virqDisabled(): boolean {
    return this.#virqDisabled;
  }

  /** pread/pwrite of the config region at `pos`: EFAULT past the end, else done in aligned chunks. */
  access(buf: Uint8Array, pos: number, write: boolean): number {
    if (pos < 0 || pos >= this.size || pos + buf.byteLength > this.size) fail('EFAULT', 'config access outside config space');
    let done = 0;
    while (done < buf.byteLength) {
      const at = pos + done;
      const left = buf.byteLength - done;
      const n = left >= 4 && at % 4 === 0 ? 4 : left >= 2 && at % 2 === 0 ? 2 : 1;
      const chunk = buf.subarray(done, done + n);
      if (write) this.#write(at, chunk);
      else this.#read(at, chunk);
      done += n;
    }
    return done;
  }

  #read(pos: number, out: Uint8Array): void {
    if (isBar(pos)) this.#barFixup();
    const phys = this.model.config;
    for (let i = 0; i < out.byteLength; i++) {
      const virt = this.#perms.virt[pos + i]!;
      out[i] = (phys[pos + i]! & ~virt) | (this.vconfig[pos + i]! & virt);
    }
  }

  #write(pos: number, data: Uint8Array): void {
    const { virt, write } = this.#perms;
    const phys = this.model.config;
    let physWritten = false;
    for (let i = 0; i < data.byteLength; i++) {
      const w = write[pos + i]!;
      const v = virt[pos + i]!;
      this.vconfig[pos + i] = (this.vconfig[pos + i]! & ~(w & v)) | (data[i]! & w & v);
      if (w & ~v) {
        phys[pos + i] = (phys[pos + i]! & ~(w & ~v)) | (data[i]! & w & ~v);
        physWritten = true;
      }
    }
    if (physWritten) this.model.configWritten?.(pos, data.byteLength);
    if (pos <= PCI_COMMAND + 1 && pos + data.byteLength > PCI_COMMAND) this.#commandWritten(pos, data);
    if (isBar(pos)) this.#barDirty = true;
    if (this.#devctl && pos <= this.#devctl + 1 && pos + data.byteLength > this.#devctl) this.#devctlWritten();
  }

  /** vfio_exp_config_write: Initiate FLR always reads as zero, and resets a device with FLR. */
  #devctlWritten(): void {
    const flr = PCI_EXP_DEVCTL_BCR_FLR;
    if (!(this.#vword(this.#devctl) & flr)) return;
    this.#setVword(this.#devctl, this.#vword(this.#devctl) & ~flr);
    const config = new DataView(this.model.config.buffer, this.model.config.byteOffset);
    const devcap = config.getUint32(this.#devctl - PCI_EXP_DEVCTL + PCI_EXP_DEVCAP, true);
    if (devcap & PCI_EXP_DEVCAP_FLR) this.events.flr();
  }

  #commandWritten(pos: number, data: Uint8Array): void {
    // vconfig remembers the memory and I/O enables the user wrote, and INTx disable drives masking.
    if (pos === PCI_COMMAND) {
      const cmd = data[0]! | ((data[1] ?? 0) << 8);
      const mask = PCI_COMMAND_MEMORY | PCI_COMMAND_IO;
      this.#setVword(PCI_COMMAND, (this.#vword(PCI_COMMAND) & ~mask) | (cmd & mask));
    }
    const disabled = (this.#vword(PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE) !== 0;
    if (disabled !== this.#virqDisabled) {
      this.#virqDisabled = disabled;
      this.events.intxDisable(disabled);
    }
  }

  /** Make the virtual BARs read back their size mask and flags, as vfio_bar_fixup does. */
  #barFixup(): void {
    if (!this.#barDirty) return;
    const dv = new DataView(this.vconfig.buffer);
    for (let i = 0; i < 6; i++) {
      const reg = PCI_BASE_ADDRESS_0 + 4 * i;
      const bar = this.model.bars.find((b) => b.index === i);
      if (!bar || bar.size === 0n) {
        dv.setUint32(reg, 0, true);
        continue;
      }
      const mask = ~(bar.size - 1n);
      const flags = bar.type === 'io' ? PCI_BASE_ADDRESS_SPACE_IO
        : (bar.type === 'mem64' ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) | (bar.prefetchable ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
      dv.setUint32(reg, ((dv.getUint32(reg, true) & Number(mask & 0xffff_ffffn)) | flags) >>> 0, true);
      if (bar.type === 'mem64') {
        dv.setUint32(reg + 4, (dv.getUint32(reg + 4, true) & Number((mask >> 32n) & 0xffff_ffffn)) >>> 0, true);
        i++;
      }
    }
    dv.setUint32(PCI_ROM_ADDRESS, 0, true); // no ROM: the ROM BAR reads as unimplemented
    this.#barDirty = false;
  }

  #vword(at: number): number {
    return this.vconfig[at]! | (this.vconfig[at + 1]! << 8);
  }

  #setVword(at: number, v: number): void {
    this.vconfig[at] = v & 0xff;
    this.vconfig[at + 1] = (v >>> 8) & 0xff;
  }
}

function isBar(pos: number): boolean {
  return (pos >= PCI_BASE_ADDRESS_0 && pos <= PCI_BASE_ADDRESS_5 + 3) || (pos >= PCI_ROM_ADDRESS && pos < PCI_ROM_ADDRESS + 4);
}
