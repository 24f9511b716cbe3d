// A guest driver for QEMU's edu device (hw/misc/edu.c; packages/sim/src/devices/edu.ts has the
// same register map), over qtest: whichever process implements edu — QEMU itself or a vfio-user
// server — this driver sees the same device.

import { setTimeout as sleep } from 'node:timers/promises';
import {
  EDU_DMA_CMD, EDU_DMA_COUNT, EDU_DMA_DST, EDU_DMA_IRQ, EDU_DMA_RUN, EDU_DMA_SRC, EDU_DMA_START, EDU_DMA_TO_PCI,
  EDU_ID, EDU_IRQ_ACK, EDU_IRQ_RAISE, EDU_IRQ_STATUS, EDU_LIVENESS,
} from '@vmmkit/sim';
import { QemuPeerError } from './peer-error.js';
import { PCI_CAP_ID_MSI, type PciFunction } from './pci-guest.js';
import type { QtestClient } from './qtest-client.js';

export const EDU_VENDOR = 0x1234;
export const EDU_DEVICE = 0x11e8;
/** What edu's identification register holds (version 1.0, "ed"). */
export const EDU_ID_VALUE = 0x010000ed;

/** edu with BAR0 at `bar0`, driven by the guest's CPU (qtest). */
export class EduGuest {
  constructor(readonly qtest: QtestClient, readonly pci: PciFunction, readonly bar0: bigint) {}

  id(): Promise<number> {
    return this.#read(EDU_ID);
  }

  /** Writes `value` to the liveness register and reads back what edu made of it (its complement). */
  async liveness(value: number): Promise<number> {
    await this.qtest.writel(this.bar0 + BigInt(EDU_LIVENESS), value);
    return this.#read(EDU_LIVENESS);
  }

  irqStatus(): Promise<number> {
    return this.#read(EDU_IRQ_STATUS);
  }

  /** Sets bits in the interrupt status register: edu raises its interrupt (MSI when enabled, else INTx). */
  raise(bits: number): Promise<void> {
    return this.qtest.writel(this.bar0 + BigInt(EDU_IRQ_RAISE), bits);
  }

  /** Clears bits in the interrupt status register: edu lowers INTx once none is left. */
  ack(bits: number): Promise<void> {
    return this.qtest.writel(this.bar0 + BigInt(EDU_IRQ_ACK), bits);
  }

  /** DMA from guest RAM at `ram` into edu's buffer (at `offset` in it). */
  async copyFromRam(ram: bigint, count: number, offset = 0, irq = false): Promise<void> {
    await this.#dma(ram, BigInt(EDU_DMA_START + offset), count, EDU_DMA_RUN | (irq ? EDU_DMA_IRQ : 0));
  }

  /** DMA from edu's buffer (at `offset` in it) into guest RAM at `ram`. */
  async copyToRam(ram: bigint, count: number, offset = 0, irq = false): Promise<void> {
    await this.#dma(BigInt(EDU_DMA_START + offset), ram, count, EDU_DMA_RUN | EDU_DMA_TO_PCI | (irq ? EDU_DMA_IRQ : 0));
  }

  /**
   * Enables MSI with one vector whose message is a write of `data` to `address`. Pointed at
   * guest RAM instead of the local APIC, the message becomes observable: the interrupt is the
   * write, and the guest reads it back from RAM.
   */
  async enableMsi(address: bigint, data: number): Promise<void> {
    const at = (await this.pci.capabilities()).get(PCI_CAP_ID_MSI);
    if (at === undefined) throw new QemuPeerError(`${this.pci.bdf}: edu has no MSI capability`);
    const control = await this.pci.read16(at + 2);
    const is64 = (control & 0x80) !== 0;
    await this.pci.write32(at + 4, Number(address & 0xffff_ffffn));
    if (is64) await this.pci.write32(at + 8, Number(address >> 32n));
    else if (address >> 32n) throw new QemuPeerError(`${this.pci.bdf}: 32-bit MSI cannot reach ${address.toString(16)}`);
    await this.pci.write16(at + (is64 ? 12 : 8), data);
    // One vector (multiple message enable 0), enabled.
    await this.pci.write16(at + 2, (control & ~0x70) | 0x1);
  }

  async disableMsi(): Promise<void> {
    const at = (await this.pci.capabilities()).get(PCI_CAP_ID_MSI);
    if (at !== undefined) await this.pci.write16(at + 2, (await this.pci.read16(at + 2)) & ~0x1);
  }

  async #dma(src: bigint, dst: bigint, count: number, cmd: number): Promise<void> {
    await this.qtest.writeq(this.bar0 + BigInt(EDU_DMA_SRC), src);
    await this.qtest.writeq(this.bar0 + BigInt(EDU_DMA_DST), dst);
    await this.qtest.writeq(this.bar0 + BigInt(EDU_DMA_COUNT), BigInt(count));
    await this.qtest.writeq(this.bar0 + BigInt(EDU_DMA_CMD), BigInt(cmd));
    await this.waitDma();
  }

  /**
   * Polls the command register until the transfer finished. QEMU's edu completes it on a
   * 100 ms virtual-time timer, which moves only when the qtest client steps the clock: each
   * poll that finds it running steps to the next deadline. (A device in another process keeps
   * its own time; there the poll itself lets it finish.)
   */
  async waitDma(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((await this.#read(EDU_DMA_CMD)) & EDU_DMA_RUN) {
      if (Date.now() > deadline) throw new QemuPeerError(`${this.pci.bdf}: edu's DMA did not finish within ${timeoutMs} ms`);
      if ((await this.qtest.clockStep()) === undefined) await sleep(5);
    }
  }

  async #read(offset: number): Promise<number> {
    return (await this.qtest.readl(this.bar0 + BigInt(offset))) >>> 0;
  }
}
