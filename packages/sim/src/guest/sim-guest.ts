// A simulated guest at work on SimHost, stepped by its caller: vCPU-like writers storing seeded
// pseudo-random bytes into guest RAM (the same stores every run), nics receiving traffic into rings
// in guest memory as the host's virtual time passes (their driver handing slots back), and
// optionally a guest IOMMU remapping a ring window. It works only while the VM runs, as vCPUs do.

import type { GuestIommu, Vmm } from '@vmmkit/core';
import type { SimHost } from '../sim-host.js';
import { nicRingBytes, returnNicSlots, startNicRing, type SimNicFunction, type SimNicRingConfig } from './sim-nic-driver.js';

/** Bytes per vCPU store. */
const STORE = 64;
// populate() fills RAM through windows of this size (a mapping's view is limited in size).
const WINDOW = 16 << 20;

/** The guest's rings unless told otherwise: 128 slots of 2 KiB, 20000 packets/s, 64 per interrupt. */
export const SIM_GUEST_RING: Required<SimNicRingConfig> = { slots: 128, packetSize: 2048, packetsPerSecond: 20_000, irqBatch: 64 };

/** A nic and where its ring is (an IOVA: the GPA without a guest IOMMU). */
export interface SimNicRing {
  readonly nic: SimNicFunction;
  readonly ring: bigint;
}

/** The guest moves a ring window between two GPAs through its IOMMU (see {@link SimGuest.remap}). */
export interface SimGuestRemap {
  readonly iommu: GuestIommu;
  readonly iova: bigint;
  readonly gpas: readonly [bigint, bigint];
}

export interface SimGuestOptions {
  /** Seed of the stores' places and bytes and of {@link SimGuest.populate}'s data. Default 0x12345678. */
  readonly seed?: number;
  /**
   * The part of each RAM block the vCPUs write to, from its start, as a fraction in (0, 1]: the
   * guest's working set (what {@link SimGuest.populate} fills). Default 1: all of RAM.
   */
  readonly workingSet?: number;
  /** Stores of 64 bytes per {@link SimGuest.step}. Default 64. */
  readonly storesPerStep?: number;
  /** Milliseconds of the host's virtual time (nic traffic) per {@link SimGuest.step}. Default 2. */
  readonly msPerStep?: number;
  /** The rings the driver sets up, over {@link SIM_GUEST_RING}. */
  readonly ring?: Partial<SimNicRingConfig>;
  /** The ring window {@link SimGuest.remap} moves. */
  readonly remap?: SimGuestRemap;
}

/** `nics` with rings one after the other in guest memory from `base`. */
export function nicRingsAt(base: bigint, nics: readonly SimNicFunction[], ring: Partial<SimNicRingConfig> = {}): SimNicRing[] {
  const bytes = nicRingBytes({ ...SIM_GUEST_RING, ...ring });
  return nics.map((nic, i) => ({ nic, ring: base + BigInt(i) * bytes }));
}

export class SimGuest {
  readonly #ring: Required<SimNicRingConfig>;
  #seed: number;
  #remaps = 0;
  #writes = 0;

  /** The guest of `vmm` on `host`, with a driver for each of `rings`' nics. */
  constructor(
    private readonly vmm: Vmm,
    private readonly host: SimHost,
    private readonly rings: readonly SimNicRing[],
    private readonly options: SimGuestOptions = {},
  ) {
    this.#ring = { ...SIM_GUEST_RING, ...options.ring };
    this.#seed = options.seed ?? 0x1234_5678;
  }

  /** Bytes of guest memory each ring takes. */
  get ringBytes(): bigint {
    return nicRingBytes(this.#ring);
  }

  /** Whether the guest works (its VM runs). */
  get running(): boolean {
    return this.vmm.running;
  }

  /** Stores of 64 bytes the vCPUs have made. */
  get writes(): number {
    return this.#writes;
  }

  /** Bytes of RAM in the working set (what {@link SimGuest.populate} fills), over every block. */
  get workingSetBytes(): number {
    return this.vmm.memory.blocks.reduce((n, b) => n + this.#workingSetBytes(b.size), 0);
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

  /** The guest's nic drivers set up: each nic gets its ring and starts receiving. */
  async setUpNics(): Promise<void> {
    for (const { nic, ring } of this.rings) await startNicRing(nic, ring, this.#ring);
  }

  /** One slice of guest time: the stores and the virtual milliseconds of the options. */
  step(): Promise<void> {
    return this.advance(this.options.msPerStep ?? 2, this.options.storesPerStep ?? 64);
  }

  /** `ms` of guest time: `stores` vCPU stores, the nics' traffic, and the drivers returning slots. */
  async advance(ms: number, stores: number): Promise<void> {
    if (!this.vmm.running) return;
    this.run(ms, stores);
    await this.returnSlots();
  }

  /** The drivers hand every slot the nics filled back to them (device accesses, one after the other). */
  async returnSlots(): Promise<void> {
    for (const { nic } of this.rings) await returnNicSlots(nic);
  }

  /**
   * `ms` of guest time without the drivers: `stores` vCPU stores and the nics' traffic, done when
   * this returns (the drivers' device accesses are asynchronous, and a caller that counts or
   * fails the host's calls of a span may want none of them in it). The rings fill up unless
   * {@link advance} returns their slots.
   */
  run(ms: number, stores: number): void {
    if (!this.vmm.running) return;
    const memory = this.vmm.memory;
    const data = new Uint8Array(STORE);
    for (let i = 0; i < stores; i++) {
      const block = memory.blocks[this.#next() % memory.blocks.length]!;
      const at = BigInt(this.#next() % (this.#workingSetBytes(block.size) / STORE)) * BigInt(STORE);
      for (let j = 0; j < data.length; j++) data[j] = this.#next() & 0xff;
      memory.write(block.gpa + at, data);
      this.#writes++;
    }
    this.host.advance(ms);
  }

  /**
   * The guest moves a ring window through its IOMMU: unmap, then map the same IOVAs to the other
   * GPA (an invalidation while the device keeps writing).
   */
  async remap(): Promise<void> {
    const remap = this.options.remap;
    if (!remap || !this.vmm.running) return;
    this.#remaps++;
    await remap.iommu.unmap(remap.iova, this.ringBytes);
    await remap.iommu.map(remap.iova, this.ringBytes, remap.gpas[this.#remaps % 2]!);
  }

  /** Run steps on the event loop until the returned function is called, as vCPUs run beside a migration. */
  runConcurrently(): () => Promise<void> {
    let running = true;
    const loop = (async () => {
      while (running) {
        await this.step();
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    })();
    return async () => {
      running = false;
      await loop;
    };
  }

  /** The working set of a block of `size` bytes: whole stores, at least one. */
  #workingSetBytes(size: bigint): number {
    const fraction = Math.min(Math.max(this.options.workingSet ?? 1, 0), 1);
    return Math.max(STORE, Math.floor((Number(size) * fraction) / STORE) * STORE);
  }

  #next(): number {
    // xorshift32: the same sequence every run.
    let x = this.#seed;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#seed = x >>> 0;
    return this.#seed;
  }
}
