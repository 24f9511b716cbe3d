// A guest at work, for demos and examples on SimHost: vCPU-like writers storing bytes into guest
// RAM and each NIC receiving packets into a ring in guest memory (its driver handing slots
// back), driven by timers while the VM runs and pausing when it does not, as vCPUs do.

import type { Vmm } from '@vmmkit/core';
import type { VfioPciDevice } from '@vmmkit/device-vfio-pci';
import type { SimHost } from '@vmmkit/sim';

const NIC_CTRL = 0x04;
const NIC_RX_RING_BASE = 0x10;
const NIC_RX_RING_SIZE = 0x18;
const NIC_RX_PKT_SIZE = 0x1c;
const NIC_RX_HEAD = 0x20;
const NIC_RX_TAIL = 0x24;
const NIC_RATE_PPS = 0x28;
const NIC_IRQ_BATCH = 0x2c;
const RING_SLOTS = 256;
const PACKET = 2048;
const TICK_MS = 5;
// A tick after a long stall covers at most this much time (a burst, not a flood).
const MAX_TICK_MS = 100;
// populate() fills RAM through windows of this size (a mapping's view is limited in size).
const WINDOW = 16 << 20;

export interface GuestActivityOptions {
  /** Bytes the vCPUs write per second of wall time, in 64-byte stores at random places. Default 4 MiB. */
  readonly writeBytesPerSecond?: number;
  /** Packets per second each NIC receives (2 KiB each). Default 20000. */
  readonly packetsPerSecond?: number;
  /** Seed of the writers' pseudo-random addresses and bytes. */
  readonly seed?: number;
  /**
   * The part of each RAM block the vCPUs write to, from its start, as a fraction in (0, 1]: the
   * guest's working set (what {@link GuestActivity.populate} fills). Default 1: all of RAM.
   */
  readonly workingSet?: number;
}

export class GuestActivity {
  #timer: NodeJS.Timeout | undefined;
  #seed: number;
  #bytesWritten = 0;

  constructor(
    private readonly vmm: Vmm,
    private readonly host: SimHost,
    private readonly nics: readonly VfioPciDevice[],
    private readonly options: GuestActivityOptions = {},
  ) {
    this.#seed = options.seed ?? 0x2545_f491;
  }

  /**
   * The guest has booted: its working set of every RAM block holds data (pseudo-random bytes from
   * the seed), so that migrating it moves real pages rather than zero markers. Call before
   * migrating; it writes behind the dirty log.
   */
  populate(): void {
    const fill = new Uint32Array(WINDOW / 4);
    for (const block of this.vmm.memory.blocks) {
      const bytes = this.#workingSetBytes(block.size);
      for (let at = 0; at < bytes; at += WINDOW) {
        const length = Math.min(WINDOW, bytes - at);
        for (let i = 0; i < length / 4; i++) fill[i] = this.#next();
        block.mapping.view(at, length).set(new Uint8Array(fill.buffer, 0, length));
      }
    }
  }

  /** Bytes of RAM in the working set (what {@link GuestActivity.populate} fills), over every block. */
  get workingSetBytes(): number {
    return this.vmm.memory.blocks.reduce((n, b) => n + this.#workingSetBytes(b.size), 0);
  }

  /** Bytes the vCPUs have written. */
  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  /** A freshly booted guest: its drivers set the NICs up, then it works (on timers). */
  start(): void {
    this.setUpNics();
    this.resume();
  }

  /** The guest's drivers set up: each NIC gets a 512 KiB ring in low RAM and starts receiving. */
  setUpNics(): void {
    this.nics.forEach((nic, i) => {
      nic.configWrite(0x04, 2, 0x0006); // memory decoding and bus mastering
      nic.barWrite(0, NIC_RX_RING_BASE, 8, BigInt(0x100_0000 + i * RING_SLOTS * PACKET));
      nic.barWrite(0, NIC_RX_RING_SIZE, 4, BigInt(RING_SLOTS));
      nic.barWrite(0, NIC_RX_PKT_SIZE, 4, BigInt(PACKET));
      nic.barWrite(0, NIC_RATE_PPS, 4, BigInt(this.options.packetsPerSecond ?? 20_000));
      nic.barWrite(0, NIC_IRQ_BATCH, 4, 64n);
      nic.barWrite(0, NIC_CTRL, 4, 1n);
    });
  }

  /**
   * The guest works on without setting anything up: a migrated guest, whose drivers' setup
   * arrived with the device state. Nothing happens when it already works.
   */
  resume(): void {
    if (this.#timer) return;
    // Timers fire late and coalesce while the event loop is busy (a migration pass, say): each
    // tick covers the wall time since the last, so the rates hold per second of wall time.
    let last = performance.now();
    this.#timer = setInterval(() => {
      const now = performance.now();
      this.tick(Math.min(now - last, MAX_TICK_MS));
      last = now;
    }, TICK_MS);
  }

  /** Stop the timers (the guest's state stays as it is). */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** `ms` of guest time: vCPU stores, NIC traffic, and the drivers returning ring slots. */
  tick(ms: number): void {
    if (!this.vmm.running) return;
    const memory = this.vmm.memory;
    const stores = Math.ceil(((this.options.writeBytesPerSecond ?? 4 << 20) * ms) / 1000 / 64);
    const data = new Uint8Array(64);
    for (let i = 0; i < stores; i++) {
      const block = memory.blocks[this.#next() % memory.blocks.length]!;
      const at = BigInt(this.#next() % (this.#workingSetBytes(block.size) / 64)) * 64n;
      data.fill(this.#next() & 0xff);
      memory.write(block.gpa + at, data);
    }
    this.#bytesWritten += stores * 64;
    this.host.advance(ms);
    for (const nic of this.nics) nic.barWrite(0, NIC_RX_TAIL, 4, nic.barRead(0, NIC_RX_HEAD, 4));
  }

  /** The working set of a block of `size` bytes: whole 64-byte stores, at least one. */
  #workingSetBytes(size: bigint): number {
    const fraction = Math.min(Math.max(this.options.workingSet ?? 1, 0), 1);
    return Math.max(64, Math.floor((Number(size) * fraction) / 64) * 64);
  }

  #next(): number {
    let x = this.#seed;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#seed = x >>> 0;
    return this.#seed;
  }
}
