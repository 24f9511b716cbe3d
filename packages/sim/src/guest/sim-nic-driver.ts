// The guest's driver for the simulated nic (see ../devices/nic-regs.ts): it enables the function,
// gives the nic a receive ring in guest memory, starts receiving, and hands consumed slots back.
// It works on anything with a PCI function's config and BAR accessors (vfio-pci's device has them,
// asynchronous since they may be messages to another process: the driver awaits each access).

import {
  NIC_CTRL, NIC_CTRL_RX_EN, NIC_DEFAULT_PKT_SIZE, NIC_IRQ_BATCH, NIC_RATE_PPS, NIC_RX_HEAD, NIC_RX_PKT_SIZE, NIC_RX_RING_BASE,
  NIC_RX_RING_SIZE, NIC_RX_TAIL,
} from '../devices/nic-regs.js';

/** PCI_COMMAND, and its memory space and bus master enables. */
const PCI_COMMAND = 0x04;
const PCI_COMMAND_MEMORY_MASTER = 0x0006;

/** What the driver needs of the nic: the guest's view of its config space and BAR0. */
export interface SimNicFunction {
  configRead(offset: number, size: 1 | 2 | 4): number | Promise<number>;
  configWrite(offset: number, size: 1 | 2 | 4, value: number): void | Promise<void>;
  barRead(bar: number, offset: number, size: 1 | 2 | 4 | 8): bigint | Promise<bigint>;
  barWrite(bar: number, offset: number, size: 1 | 2 | 4 | 8, value: bigint): void | Promise<void>;
}

/** How the driver sets a receive ring up. */
export interface SimNicRingConfig {
  /** Packet slots in the ring. */
  readonly slots: number;
  /** Bytes per packet and per slot. Default 2048. */
  readonly packetSize?: number;
  /** Packets per second (of the host's virtual time) the nic receives. */
  readonly packetsPerSecond: number;
  /** Packets per receive interrupt. Default: left as the nic has it. */
  readonly irqBatch?: number;
}

/** Bytes of guest memory a ring of `config` takes. */
export function nicRingBytes(config: SimNicRingConfig): bigint {
  return BigInt(config.slots * (config.packetSize ?? NIC_DEFAULT_PKT_SIZE));
}

/**
 * Set the nic up as a guest driver does: memory decoding and bus mastering on, a ring of
 * `config` at `ring` (an IOVA: the GPA without a guest IOMMU), then receive on.
 */
export async function startNicRing(nic: SimNicFunction, ring: bigint, config: SimNicRingConfig): Promise<void> {
  await nic.configWrite(PCI_COMMAND, 2, (await nic.configRead(PCI_COMMAND, 2)) | PCI_COMMAND_MEMORY_MASTER);
  await nic.barWrite(0, NIC_RX_RING_BASE, 8, ring);
  await nic.barWrite(0, NIC_RX_RING_SIZE, 4, BigInt(config.slots));
  await nic.barWrite(0, NIC_RX_PKT_SIZE, 4, BigInt(config.packetSize ?? NIC_DEFAULT_PKT_SIZE));
  await nic.barWrite(0, NIC_RATE_PPS, 4, BigInt(config.packetsPerSecond));
  if (config.irqBatch !== undefined) await nic.barWrite(0, NIC_IRQ_BATCH, 4, BigInt(config.irqBatch));
  await nic.barWrite(0, NIC_CTRL, 4, BigInt(NIC_CTRL_RX_EN));
}

/** The driver has consumed every packet the nic wrote: every filled slot goes back to the nic. */
export async function returnNicSlots(nic: SimNicFunction): Promise<void> {
  await nic.barWrite(0, NIC_RX_TAIL, 4, await nic.barRead(0, NIC_RX_HEAD, 4));
}
