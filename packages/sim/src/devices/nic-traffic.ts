// The simulated NIC's traffic generator: as virtual time passes it turns its packet rate into
// packets DMA-written into the receive ring, updates its flow table, and asks for an interrupt
// per batch. Packets that find the ring full are dropped and counted.

import { SimDmaFault } from '../iommu/dma-target.js';
import type { SimDeviceBus } from './pci-model.js';
import type { NicState } from './nic-state.js';
import {
  NIC_CTRL_RX_EN, NIC_FLOW_ENTRY, NIC_FLOWS, NIC_IRQ_DMA_ERROR, NIC_IRQ_RX, NIC_PKT_HEADER,
} from './nic-regs.js';

/** What the generator needs from the NIC around it. */
export interface TrafficSink {
  readonly bus: SimDeviceBus;
  /** Signal a receive (or error) interrupt cause. */
  interrupt(cause: number): void;
}

/** Whether the receive engine can move packets. */
export function rxActive(s: NicState): boolean {
  return (s.ctrl & NIC_CTRL_RX_EN) !== 0 && s.ringSize > 0 && s.rate > 0;
}

/** Let `ms` of virtual time pass for the receive engine. Returns whether the state changed. */
export function runTraffic(s: NicState, ms: number, sink: TrafficSink): boolean {
  if (!rxActive(s)) return false;
  s.credit += s.rate * ms;
  let due = Math.floor(s.credit / 1000);
  s.credit -= due * 1000;
  if (due === 0) return true;
  while (due > 0) {
    if ((s.head + 1) % s.ringSize === s.tail) {
      s.drops += BigInt(due); // the ring stays full until software moves the tail
      return true;
    }
    if (!deliver(s, sink)) return true;
    due--;
  }
  return true;
}

/** DMA one packet into the head slot. False when the IOMMU refused it (the engine stops). */
function deliver(s: NicState, sink: TrafficSink): boolean {
  const packet = makePacket(s.seq, s.pktSize, s.seed);
  try {
    sink.bus.dmaWrite(s.ringBase + BigInt(s.head) * BigInt(s.pktSize), packet);
  } catch (e) {
    if (!(e instanceof SimDmaFault)) throw e;
    // Like most NICs, a DMA error halts the receive engine until software restarts it.
    sink.bus.faults.push(e);
    s.dmaErrors = (s.dmaErrors + 1) >>> 0;
    s.ctrl &= ~NIC_CTRL_RX_EN;
    s.credit = 0;
    sink.interrupt(NIC_IRQ_DMA_ERROR);
    return false;
  }
  s.head = (s.head + 1) % s.ringSize;
  s.packets += 1n;
  s.bytes += BigInt(s.pktSize);
  countFlow(s, packet);
  s.seq += 1n;
  if (++s.sinceIrq >= s.batch) {
    s.sinceIrq = 0;
    sink.interrupt(NIC_IRQ_RX);
  }
  return true;
}

/** The packet with sequence number `seq`: header, then a payload pattern derived from seq and seed. */
export function makePacket(seq: bigint, size: number, seed: number): Uint8Array {
  const packet = new Uint8Array(size);
  const dv = new DataView(packet.buffer);
  dv.setBigUint64(0, seq, true);
  dv.setUint32(8, size, true);
  dv.setUint32(12, flowOf(seq, seed), true);
  const words = new Uint32Array(packet.buffer, NIC_PKT_HEADER, (size - NIC_PKT_HEADER) >>> 2);
  let x = (seed ^ Number(seq & 0xffff_ffffn) ^ 0x9e37_79b9) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return packet;
}

/** The flow a packet belongs to. */
export function flowOf(seq: bigint, seed: number): number {
  let h = (Number(seq & 0xffff_ffffn) ^ Math.imul(Number(seq >> 32n), 0x85eb_ca6b) ^ seed) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb_352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846c_a68b) >>> 0;
  return ((h ^ (h >>> 16)) >>> 0) % NIC_FLOWS;
}

function countFlow(s: NicState, packet: Uint8Array): void {
  const dv = new DataView(packet.buffer);
  const at = dv.getUint32(12, true) * NIC_FLOW_ENTRY;
  const flows = new DataView(s.flows.buffer, s.flows.byteOffset);
  flows.setBigUint64(at, flows.getBigUint64(at, true) + 1n, true);
  flows.setUint32(at + 8, (flows.getUint32(at + 8, true) + packet.byteLength) >>> 0, true);
  flows.setUint32(at + 12, Number(s.seq & 0xffff_ffffn), true);
}
