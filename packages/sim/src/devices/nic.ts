// A simulated PCIe NIC for migration tests: BAR0 registers, a receive engine that DMA-writes
// generated packets into a ring in guest memory as virtual time passes, interrupts per batch
// (MSI-X, MSI or INTx), and a device state that VFIO migration v2 saves and restores.

import { ArgumentError } from '@vmmkit/core';
import type { SimDeviceConfig } from '../config.js';
import { buildConfigSpace, firmwareBarBase, msiEnabled, msixEnabled, type ConfigSpaceSpec } from './config-space.js';
import { ViewBacking, type MemoryBacking } from '../memory/backing.js';
import type { SimBar, SimDeviceBus, SimIoeventfdRegister, SimMigratableState, SimPciModel } from './pci-model.js';
import { NicState, NIC_MAX_RING } from './nic-state.js';
import { rxActive, runTraffic } from './nic-traffic.js';
import * as R from './nic-regs.js';

const BAR0: SimBar = { index: 0, size: BigInt(R.NIC_BAR0_SIZE), type: 'mem32' };
const BAR2: SimBar = {
  index: 2, size: BigInt(R.NIC_BAR2_SIZE), type: 'mem64', prefetchable: true,
  mmapAreas: [
    { offset: 0n, size: BigInt(R.NIC_BAR2_REG_PAGE) },
    { offset: BigInt(R.NIC_BAR2_REG_PAGE + 0x1000), size: BigInt(R.NIC_BAR2_SIZE - R.NIC_BAR2_REG_PAGE - 0x1000) },
  ],
};

/** The NIC. Registers are 32 bits wide; 64-bit registers also take aligned 8-byte accesses. */
export class NicModel implements SimPciModel, SimMigratableState {
  readonly kind = 'nic';
  readonly config: Uint8Array;
  readonly bars: readonly SimBar[] = [BAR0, BAR2];
  readonly interrupts = { intx: true, msi: 1, msix: R.NIC_MSIX_VECTORS } as const;
  /** The doorbell: any 32-bit write rings it, so a server may let it ring through an eventfd. */
  readonly ioeventfds: readonly SimIoeventfdRegister[] = [{ bar: 2, offset: R.NIC_DOORBELL, size: 4 }];
  readonly migration: SimMigratableState = this;
  readonly #spec: ConfigSpaceSpec;
  readonly #state = new NicState();
  #bar2 = new ViewBacking(this.#state.memory);
  #bus: SimDeviceBus | undefined;
  #running = true;
  #version = 0;

  constructor(config: SimDeviceConfig) {
    this.#spec = {
      vendor: 0x1234, device: 0x4e49, revision: 0x01, classCode: 0x020000,
      subsystemVendor: 0x1af4, subsystemId: 0x1100, command: 0x0002, interruptPin: 1,
      bars: this.bars, barBase: (bar) => firmwareBarBase(config.bdf, bar),
      pcie: true, msi: { vectors: 1 },
      msix: { vectors: R.NIC_MSIX_VECTORS, bar: 0, table: R.NIC_MSIX_TABLE, pba: R.NIC_MSIX_PBA },
    };
    this.config = buildConfigSpace(this.#spec);
  }

  get version(): number {
    return this.#version;
  }

  connect(bus: SimDeviceBus): void {
    this.#bus = bus;
  }

  barMemory(bar: number): MemoryBacking | undefined {
    return bar === 2 ? this.#bar2 : undefined;
  }

  shareBarMemory(bar: number, bytes: Uint8Array): void {
    if (bar !== 2 || bytes.byteLength !== R.NIC_BAR2_SIZE) throw new ArgumentError(`nic: BAR${bar} memory of ${bytes.byteLength} bytes cannot be shared`);
    this.#state.adoptMemory(bytes);
    this.#bar2 = new ViewBacking(bytes);
  }

  barRead(bar: number, offset: number, size: 1 | 2 | 4 | 8): bigint {
    if (bar === 2) return this.#bar2Read(offset, size);
    let value = 0n;
    for (let i = size - 1; i >= 0; i--) {
      const at = offset + i;
      const reg = BigInt(this.#register(at & ~3));
      value = (value << 8n) | ((reg >> BigInt((at & 3) * 8)) & 0xffn);
    }
    return value;
  }

  barWrite(bar: number, offset: number, size: 1 | 2 | 4 | 8, value: bigint): void {
    if (bar === 2) return this.#bar2Write(offset, size, value);
    // Sub-dword writes are ignored, as on many real register files.
    if (size < 4 || offset % size) return;
    this.#writeRegister(offset, Number(value & 0xffff_ffffn));
    if (size === 8) this.#writeRegister(offset + 4, Number(value >> 32n));
    this.#version++;
  }

  advance(ms: number): void {
    if (!this.#running || !this.#bus) return;
    if (runTraffic(this.#state, ms, { bus: this.#bus, interrupt: (cause) => this.#interrupt(cause) })) this.#version++;
  }

  reset(): void {
    this.#state.reset();
    this.#running = true;
    this.#version++;
    this.config.set(buildConfigSpace({ ...this.#spec, command: 0 }));
    this.#bus?.lowerIntx();
  }

  save(): Uint8Array {
    return this.#state.save();
  }

  load(state: Uint8Array): void {
    this.#state.load(state);
    this.#version++;
  }

  setRunning(running: boolean): void {
    this.#running = running;
  }

  #register(offset: number): number {
    const s = this.#state;
    const lo = (v: bigint): number => Number(v & 0xffff_ffffn);
    const hi = (v: bigint): number => Number(v >> 32n);
    switch (offset) {
      case R.NIC_ID: return R.NIC_ID_VALUE;
      case R.NIC_CTRL: return s.ctrl;
      case R.NIC_STATUS: return R.NIC_STATUS_LINK_UP | (rxActive(s) ? R.NIC_STATUS_RX_ACTIVE : 0);
      case R.NIC_IRQ_STATUS: return s.irqStatus;
      case R.NIC_RX_RING_BASE: return lo(s.ringBase);
      case R.NIC_RX_RING_BASE + 4: return hi(s.ringBase);
      case R.NIC_RX_RING_SIZE: return s.ringSize;
      case R.NIC_RX_PKT_SIZE: return s.pktSize;
      case R.NIC_RX_HEAD: return s.head;
      case R.NIC_RX_TAIL: return s.tail;
      case R.NIC_RATE_PPS: return s.rate;
      case R.NIC_IRQ_BATCH: return s.batch;
      case R.NIC_RX_PACKETS: return lo(s.packets);
      case R.NIC_RX_PACKETS + 4: return hi(s.packets);
      case R.NIC_RX_BYTES: return lo(s.bytes);
      case R.NIC_RX_BYTES + 4: return hi(s.bytes);
      case R.NIC_RX_DROPS: return lo(s.drops);
      case R.NIC_RX_DROPS + 4: return hi(s.drops);
      case R.NIC_DMA_ERRORS: return s.dmaErrors;
      case R.NIC_SEED: return s.seed;
      default: return 0;
    }
  }

  #writeRegister(offset: number, v: number): void {
    const s = this.#state;
    switch (offset) {
      case R.NIC_CTRL:
        if (v & R.NIC_CTRL_RESET) this.#softReset();
        else s.ctrl = v & (R.NIC_CTRL_RX_EN | R.NIC_CTRL_IRQ_EN);
        break;
      case R.NIC_IRQ_STATUS:
        s.irqStatus &= ~v;
        if (!s.irqStatus) this.#bus?.lowerIntx();
        break;
      case R.NIC_RX_RING_BASE: s.ringBase = (s.ringBase & ~0xffff_ffffn) | BigInt(v >>> 0); break;
      case R.NIC_RX_RING_BASE + 4: s.ringBase = (s.ringBase & 0xffff_ffffn) | (BigInt(v >>> 0) << 32n); break;
      case R.NIC_RX_RING_SIZE:
        // A new ring starts empty.
        s.ringSize = Math.min(v >>> 0, NIC_MAX_RING);
        s.head = s.tail = 0;
        break;
      case R.NIC_RX_PKT_SIZE: s.pktSize = Math.min(Math.max(v >>> 0, R.NIC_PKT_MIN), R.NIC_PKT_MAX) & ~3; break;
      case R.NIC_RX_TAIL: if (s.ringSize) s.tail = (v >>> 0) % s.ringSize; break;
      case R.NIC_RATE_PPS: s.rate = v >>> 0; break;
      case R.NIC_IRQ_BATCH: s.batch = Math.max(v >>> 0, 1); break;
      case R.NIC_SEED: s.seed = v >>> 0; break;
    }
  }

  /** BAR2: device memory, and the doorbell in its register page. */
  #bar2Read(offset: number, size: number): bigint {
    if (inRegisterPage(offset)) return offset === R.NIC_DOORBELL && size === 4 ? BigInt(this.#state.doorbells) : 0n;
    const out = new Uint8Array(8);
    out.set(this.#state.memory.subarray(offset, offset + size));
    return new DataView(out.buffer).getBigUint64(0, true);
  }

  #bar2Write(offset: number, size: number, value: bigint): void {
    if (inRegisterPage(offset)) {
      if (offset === R.NIC_DOORBELL && size === 4) this.#state.doorbells = (this.#state.doorbells + 1) >>> 0;
    } else {
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setBigUint64(0, value, true);
      this.#state.memory.set(bytes.subarray(0, size), offset);
    }
    this.#version++;
  }

  /** Software reset through NIC_CTRL: registers and counters back to defaults, the ring forgotten. */
  #softReset(): void {
    this.#state.reset();
    this.#bus?.lowerIntx();
  }

  /** Latch an interrupt cause and signal it when interrupts are enabled. */
  #interrupt(cause: number): void {
    const s = this.#state;
    s.irqStatus |= cause;
    if (!(s.ctrl & R.NIC_CTRL_IRQ_EN)) return;
    if (msixEnabled(this.config)) this.#bus!.raiseIrq({ kind: 'msix', vector: 0 });
    else if (msiEnabled(this.config)) this.#bus!.raiseIrq({ kind: 'msi', vector: 0 });
    else this.#bus!.raiseIrq({ kind: 'intx' });
  }
}

function inRegisterPage(offset: number): boolean {
  return offset >= R.NIC_BAR2_REG_PAGE && offset < R.NIC_BAR2_REG_PAGE + 0x1000;
}
