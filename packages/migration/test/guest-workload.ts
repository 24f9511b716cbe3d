// A guest at work for the migration tests: vCPU-like writers storing pseudo-random bytes into
// guest RAM, nics DMA-writing received packets into rings as virtual time passes (their driver
// handing slots back), and optionally a guest IOMMU remapping a nic's ring window. It runs only
// while the VM runs, as vCPUs do.

import { createHash } from 'node:crypto';
import type { GuestIommu, Vmm } from '@vmmkit/core';
import type { VfioPciDevice } from '@vmmkit/device-vfio-pci';
import {
  NIC_CTRL, NIC_IRQ_BATCH, NIC_RATE_PPS, NIC_RX_HEAD, NIC_RX_PKT_SIZE, NIC_RX_RING_BASE, NIC_RX_RING_SIZE, NIC_RX_TAIL,
  type SimHost,
} from '@vmmkit/sim';

const RING_SLOTS = 128;
const PACKET = 2048;
export const RING_BYTES = BigInt(RING_SLOTS * PACKET);

/** A nic and where its ring is (an IOVA: a GPA without a guest IOMMU). */
export interface NicRing {
  readonly nic: VfioPciDevice;
  readonly ring: bigint;
}

export interface WorkloadOptions {
  /** Writes of 64 bytes per step, spread over all of RAM. */
  readonly writesPerStep?: number;
  /** Virtual milliseconds of nic traffic per step. */
  readonly msPerStep?: number;
  /** The ring window `remap()` moves between two GPAs (the guest IOMMU's invalidations). */
  readonly remap?: { readonly iommu: GuestIommu; readonly iova: bigint; readonly gpas: readonly [bigint, bigint] };
}

export class GuestWorkload {
  #seed = 0x1234_5678;
  #remaps = 0;
  #writes = 0;

  constructor(
    private readonly vmm: Vmm,
    private readonly host: SimHost,
    private readonly rings: readonly NicRing[],
    private readonly options: WorkloadOptions = {},
  ) {}

  /** The guest's nic driver: a ring of 128 slots of 2 KiB, 20000 packets/s, receive on. */
  startNics(): void {
    for (const { nic, ring } of this.rings) {
      nic.barWrite(0, NIC_RX_RING_BASE, 8, ring);
      nic.barWrite(0, NIC_RX_RING_SIZE, 4, BigInt(RING_SLOTS));
      nic.barWrite(0, NIC_RX_PKT_SIZE, 4, BigInt(PACKET));
      nic.barWrite(0, NIC_RATE_PPS, 4, 20_000n);
      nic.barWrite(0, NIC_IRQ_BATCH, 4, 64n);
      nic.barWrite(0, NIC_CTRL, 4, 1n);
    }
  }

  /** vCPU writes actually made. */
  get writes(): number {
    return this.#writes;
  }

  /** One slice of guest time: vCPU writes, nic traffic, and the driver returning slots. */
  step(): void {
    if (!this.vmm.running) return;
    const memory = this.vmm.memory;
    const data = new Uint8Array(64);
    for (let i = 0; i < (this.options.writesPerStep ?? 64); i++) {
      const block = memory.blocks[this.#next() % memory.blocks.length]!;
      const offset = BigInt(this.#next() % Number(block.size / 64n)) * 64n;
      for (let j = 0; j < data.length; j++) data[j] = this.#next() & 0xff;
      memory.write(block.gpa + offset, data);
      this.#writes++;
    }
    this.host.advance(this.options.msPerStep ?? 2);
    for (const { nic } of this.rings) nic.barWrite(0, NIC_RX_TAIL, 4, nic.barRead(0, NIC_RX_HEAD, 4));
  }

  /**
   * The guest moves a ring window through its IOMMU: unmap, then map the same IOVAs to the other
   * GPA (an invalidation while the device keeps writing).
   */
  async remap(): Promise<void> {
    const remap = this.options.remap;
    if (!remap || !this.vmm.running) return;
    this.#remaps++;
    await remap.iommu.unmap(remap.iova, RING_BYTES);
    await remap.iommu.map(remap.iova, RING_BYTES, remap.gpas[this.#remaps % 2]!);
  }

  /** Run steps on the event loop until stopped, as vCPUs run beside the migration. */
  runConcurrently(): () => Promise<void> {
    let running = true;
    const loop = (async () => {
      while (running) {
        this.step();
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    })();
    return async () => {
      running = false;
      await loop;
    };
  }

  #next(): number {
    // xorshift32: the same writes every run.
    let x = this.#seed;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#seed = x >>> 0;
    return this.#seed;
  }
}

/** A hash of every RAM block's bytes. */
export function ramHash(vmm: Vmm): string {
  const hash = createHash('sha256');
  for (const b of vmm.memory.blocks) hash.update(b.mapping.view(0, Number(b.size)));
  return hash.digest('hex');
}
