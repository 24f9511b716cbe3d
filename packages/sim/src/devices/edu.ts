// QEMU's educational PCI device (hw/misc/edu.c): identification, liveness, factorial, interrupt
// raise/ack and a DMA engine with a 4 KiB buffer, driven through BAR0 as on a real edu.

import { SimDmaFault } from '../iommu/dma-target.js';
import { DenseBacking } from '../memory/backing.js';
import type { SimDeviceConfig } from '../config.js';
import { buildConfigSpace, firmwareBarBase, msiEnabled, type ConfigSpaceSpec } from './config-space.js';
import type { SimBar, SimDeviceBus, SimPciModel } from './pci-model.js';

/** edu's register map (BAR0 offsets). */
export const EDU_ID = 0x00;
export const EDU_LIVENESS = 0x04;
export const EDU_FACTORIAL = 0x08;
export const EDU_STATUS = 0x20;
export const EDU_IRQ_STATUS = 0x24;
export const EDU_IRQ_RAISE = 0x60;
export const EDU_IRQ_ACK = 0x64;
export const EDU_DMA_SRC = 0x80;
export const EDU_DMA_DST = 0x88;
export const EDU_DMA_COUNT = 0x90;
export const EDU_DMA_CMD = 0x98;
export const EDU_STATUS_COMPUTING = 0x01;
export const EDU_STATUS_IRQFACT = 0x80;
export const EDU_DMA_RUN = 0x1;
/** Direction bit of the DMA command: set for edu buffer → RAM. */
export const EDU_DMA_TO_PCI = 0x2;
export const EDU_DMA_IRQ = 0x4;
export const EDU_FACT_IRQ = 0x001;
export const EDU_DMA_IRQ_STATUS = 0x100;
/** Where edu's DMA buffer sits in its own DMA address space (not reachable through BAR0). */
export const EDU_DMA_START = 0x40000;
export const EDU_DMA_SIZE = 4096;
/** The DMA engine's timer: a transfer completes 100 ms (virtual) after it is started. */
export const EDU_DMA_DELAY_MS = 100;

const ID_VALUE = 0x010000edn;
const ALL_ONES = 0xffff_ffff_ffff_ffffn;
// QEMU's edu lets vfio-pci mmap all of BAR0, but its accesses trap into QEMU's register handlers;
// a simulated mapping cannot trap, so here BAR0 is reached through read/write only.
const BAR0: SimBar = { index: 0, size: 0x10_0000n, type: 'mem32' };

/**
 * The edu device. Differences from QEMU, all deliberate:
 * - a pending DMA completes when virtual time passes its 100 ms timer (`advance`), or as soon as
 *   software reads the command register while the transfer runs: a poll of 0x98 stands for the
 *   wait, so the poll loop a real edu needs also works on the simulated host without `advance`;
 * - the factorial is computed at once (QEMU's thread is just as quick in practice);
 * - BAR0 cannot be mmapped (see BAR0 above): software reaches it through read/write;
 * - a transfer outside the buffer moves no data (QEMU would log and overrun its buffer);
 * - a function reset returns every register to power-on state (QEMU's edu has no reset handler).
 */
export class EduModel implements SimPciModel {
  readonly kind = 'edu';
  readonly config: Uint8Array;
  readonly bars: readonly SimBar[] = [BAR0];
  readonly interrupts = { intx: true, msi: 1, msix: 0 } as const;
  readonly #spec: ConfigSpaceSpec;
  readonly #buffer = new DenseBacking(EDU_DMA_SIZE);
  readonly #dmaMask: bigint;
  #bus: SimDeviceBus | undefined;
  #addr4 = 0;
  #fact = 0;
  #status = 0;
  #irqStatus = 0;
  #dma = { src: 0n, dst: 0n, cnt: 0n, cmd: 0n };
  /** Virtual time at which the running transfer's timer fires. */
  #dmaDue: number | undefined;

  constructor(config: SimDeviceConfig) {
    const mask = config.options?.['dma_mask'];
    this.#dmaMask = mask === undefined ? (1n << 28n) - 1n : BigInt(mask as bigint | number);
    this.#spec = {
      vendor: 0x1234, device: 0x11e8, revision: 0x10, classCode: 0x00ff00,
      subsystemVendor: 0x1af4, subsystemId: 0x1100,
      // What realhost read through VFIO: IO | MEMORY | SERR, as the firmware left it.
      command: 0x0103, interruptPin: 1,
      bars: this.bars, barBase: (bar) => firmwareBarBase(config.bdf, bar),
      msi: { vectors: 1 },
    };
    this.config = buildConfigSpace(this.#spec);
  }

  /** The DMA buffer as the device holds it: for inspection in tests (software reaches it only by DMA). */
  get buffer(): Uint8Array {
    return this.#buffer.view(0, EDU_DMA_SIZE);
  }

  connect(bus: SimDeviceBus): void {
    this.#bus = bus;
  }

  barRead(_bar: number, offset: number, size: 1 | 2 | 4 | 8): bigint {
    if (!this.#validAccess(offset, size)) return mask(ALL_ONES, size);
    if (offset === EDU_DMA_CMD && this.#dma.cmd & BigInt(EDU_DMA_RUN)) this.#runDma();
    return mask(this.#register(offset) ?? ALL_ONES, size);
  }

  barWrite(_bar: number, offset: number, size: 1 | 2 | 4 | 8, value: bigint): void {
    if (!this.#validAccess(offset, size)) return;
    const v32 = Number(value & 0xffff_ffffn);
    switch (offset) {
      case EDU_LIVENESS: this.#addr4 = ~v32 >>> 0; break;
      case EDU_FACTORIAL: this.#startFactorial(v32); break;
      case EDU_STATUS: this.#status = (this.#status & ~EDU_STATUS_IRQFACT) | (v32 & EDU_STATUS_IRQFACT); break;
      case EDU_IRQ_RAISE: this.#raise(v32); break;
      case EDU_IRQ_ACK: this.#lower(v32); break;
      case EDU_DMA_SRC: this.#dmaWrite('src', value); break;
      case EDU_DMA_DST: this.#dmaWrite('dst', value); break;
      case EDU_DMA_COUNT: this.#dmaWrite('cnt', value); break;
      case EDU_DMA_CMD:
        if (!(value & BigInt(EDU_DMA_RUN)) || this.#dma.cmd & BigInt(EDU_DMA_RUN)) break;
        this.#dma.cmd = value;
        this.#dmaDue = this.#bus!.now() + EDU_DMA_DELAY_MS;
        break;
    }
  }

  advance(): void {
    if (this.#dmaDue !== undefined && this.#bus!.now() >= this.#dmaDue) this.#runDma();
  }

  reset(): void {
    this.#addr4 = this.#fact = this.#status = this.#irqStatus = 0;
    this.#dma = { src: 0n, dst: 0n, cnt: 0n, cmd: 0n };
    this.#dmaDue = undefined;
    this.#buffer.write(0, new Uint8Array(EDU_DMA_SIZE));
    this.config.set(buildConfigSpace({ ...this.#spec, command: 0 }));
    this.#bus?.lowerIntx();
  }

  /** Register reads; undefined for offsets edu does not decode (they read as all ones). */
  #register(offset: number): bigint | undefined {
    switch (offset) {
      case EDU_ID: return ID_VALUE;
      case EDU_LIVENESS: return BigInt(this.#addr4);
      case EDU_FACTORIAL: return BigInt(this.#fact);
      case EDU_STATUS: return BigInt(this.#status);
      case EDU_IRQ_STATUS: return BigInt(this.#irqStatus);
      case EDU_DMA_SRC: return this.#dma.src;
      case EDU_DMA_DST: return this.#dma.dst;
      case EDU_DMA_COUNT: return this.#dma.cnt;
      case EDU_DMA_CMD: return this.#dma.cmd;
      default: return undefined;
    }
  }

  /** edu decodes 4-byte accesses below 0x80 and 4- or 8-byte accesses from 0x80. */
  #validAccess(offset: number, size: number): boolean {
    return offset < 0x80 ? size === 4 : size === 4 || size === 8;
  }

  #dmaWrite(field: 'src' | 'dst' | 'cnt', value: bigint): void {
    // edu ignores the DMA registers while a transfer runs; a 4-byte write zero-extends.
    if (!(this.#dma.cmd & BigInt(EDU_DMA_RUN))) this.#dma[field] = value;
  }

  #startFactorial(n: number): void {
    if (this.#status & EDU_STATUS_COMPUTING) return;
    let result = 1;
    for (let i = n; i > 0; i--) result = Math.imul(result, i) >>> 0;
    this.#fact = result;
    if (this.#status & EDU_STATUS_IRQFACT) this.#raise(EDU_FACT_IRQ);
  }

  #raise(bits: number): void {
    this.#irqStatus = (this.#irqStatus | bits) >>> 0;
    if (!this.#irqStatus) return;
    if (msiEnabled(this.config)) this.#bus!.raiseIrq({ kind: 'msi', vector: 0 });
    else this.#bus!.raiseIrq({ kind: 'intx' });
  }

  #lower(bits: number): void {
    this.#irqStatus = (this.#irqStatus & ~bits) >>> 0;
    if (!this.#irqStatus && !msiEnabled(this.config)) this.#bus!.lowerIntx();
  }

  /** The DMA timer fired: move the data, clear RUN, and interrupt if asked to. */
  #runDma(): void {
    this.#dmaDue = undefined;
    const { src, dst, cnt, cmd } = this.#dma;
    const toPci = (cmd & BigInt(EDU_DMA_TO_PCI)) !== 0n;
    const local = toPci ? src : dst;
    const start = BigInt(EDU_DMA_START);
    if (cnt > 0n && local >= start && local + cnt <= start + BigInt(EDU_DMA_SIZE)) {
      const at = Number(local - start);
      const n = Number(cnt);
      try {
        if (toPci) this.#bus!.dmaWrite(dst & this.#dmaMask, this.#buffer.view(at, n).slice());
        else this.#buffer.write(at, this.#bus!.dmaRead(src & this.#dmaMask, n));
      } catch (e) {
        if (!(e instanceof SimDmaFault)) throw e;
        this.#bus!.faults.push(e);
      }
    }
    this.#dma.cmd = cmd & ~BigInt(EDU_DMA_RUN);
    if (cmd & BigInt(EDU_DMA_IRQ)) this.#raise(EDU_DMA_IRQ_STATUS);
  }
}

function mask(value: bigint, size: number): bigint {
  return value & ((1n << BigInt(size * 8)) - 1n);
}
