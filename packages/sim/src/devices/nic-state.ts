// The simulated NIC's complete device state (registers, traffic accounting and its internal
// flow table) and its serialized form, which VFIO migration carries through the data fd.

import { fail } from '../kernel/sim-errno.js';
import {
  NIC_BAR2_SIZE, NIC_DEFAULT_IRQ_BATCH, NIC_DEFAULT_PKT_SIZE, NIC_FLOW_ENTRY, NIC_FLOWS, NIC_PKT_MAX, NIC_PKT_MIN,
} from './nic-regs.js';

const MAGIC = 0x5343_494e; // "NICS"
const FORMAT = 2;
const FIXED = 104;
/** Largest ring the NIC accepts. */
export const NIC_MAX_RING = 1 << 16;

/** Everything the NIC remembers. Mutated by register writes and by received traffic. */
export class NicState {
  ctrl = 0;
  irqStatus = 0;
  ringBase = 0n;
  ringSize = 0;
  pktSize = NIC_DEFAULT_PKT_SIZE;
  head = 0;
  tail = 0;
  rate = 0;
  batch = NIC_DEFAULT_IRQ_BATCH;
  packets = 0n;
  bytes = 0n;
  drops = 0n;
  dmaErrors = 0;
  seed = 0;
  /** Packet credit in packet-milliseconds (rate × elapsed ms), below 1000 between advances. */
  credit = 0;
  /** Packets delivered since the last receive interrupt. */
  sinceIrq = 0;
  /** Sequence number of the next packet. */
  seq = 0n;
  /** Times BAR2's doorbell rang. */
  doorbells = 0;
  /** Per-flow counters: packets (u64), bytes (u32), last sequence number (u32). */
  readonly flows = new Uint8Array(NIC_FLOWS * NIC_FLOW_ENTRY);
  /** BAR2's device memory (the same array for the NIC's life once adopted, so mappings of it stay valid). */
  #memory: Uint8Array = new Uint8Array(NIC_BAR2_SIZE);

  get memory(): Uint8Array {
    return this.#memory;
  }

  /** Keep BAR2's memory in `bytes` (NIC_BAR2_SIZE of them) from now on, with the current contents. */
  adoptMemory(bytes: Uint8Array): void {
    bytes.set(this.#memory);
    this.#memory = bytes;
  }

  /** Back to power-on values. */
  reset(): void {
    this.copyFrom(new NicState());
  }

  /** The serialized state: a fixed header of registers and counters, the flow table, BAR2's memory. */
  save(): Uint8Array {
    const out = new Uint8Array(FIXED + this.flows.byteLength + this.memory.byteLength);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, MAGIC, true);
    dv.setUint16(4, FORMAT, true);
    const u32 = [this.ctrl, this.irqStatus, this.ringSize, this.pktSize, this.head, this.tail, this.rate, this.batch,
      this.dmaErrors, this.seed, this.sinceIrq, this.doorbells];
    u32.forEach((v, i) => dv.setUint32(8 + 4 * i, v, true));
    dv.setBigUint64(56, this.ringBase, true);
    dv.setBigUint64(64, this.packets, true);
    dv.setBigUint64(72, this.bytes, true);
    dv.setBigUint64(80, this.drops, true);
    dv.setBigUint64(88, this.seq, true);
    dv.setFloat64(96, this.credit, true);
    out.set(this.flows, FIXED);
    out.set(this.memory, FIXED + this.flows.byteLength);
    return out;
  }

  /** Replace the state with a saved one; EINVAL (changing nothing) when it is not a valid NIC state. */
  load(bytes: Uint8Array): void {
    const next = NicState.parse(bytes);
    this.copyFrom(next);
  }

  copyFrom(other: NicState): void {
    const { flows, memory, ...fields } = other;
    Object.assign(this, fields);
    this.flows.set(flows);
    this.memory.set(memory);
  }

  static parse(bytes: Uint8Array): NicState {
    const size = FIXED + NIC_FLOWS * NIC_FLOW_ENTRY + NIC_BAR2_SIZE;
    if (bytes.byteLength !== size) fail('EINVAL', `NIC state is ${bytes.byteLength} bytes, expected ${size}`);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (dv.getUint32(0, true) !== MAGIC || dv.getUint16(4, true) !== FORMAT || dv.getUint16(6, true) !== 0) {
      fail('EINVAL', `not a NIC state of format ${FORMAT}`);
    }
    const s = new NicState();
    const u32 = (i: number): number => dv.getUint32(8 + 4 * i, true);
    [s.ctrl, s.irqStatus, s.ringSize, s.pktSize, s.head, s.tail, s.rate, s.batch, s.dmaErrors, s.seed, s.sinceIrq, s.doorbells] =
      [u32(0), u32(1), u32(2), u32(3), u32(4), u32(5), u32(6), u32(7), u32(8), u32(9), u32(10), u32(11)];
    s.ringBase = dv.getBigUint64(56, true);
    s.packets = dv.getBigUint64(64, true);
    s.bytes = dv.getBigUint64(72, true);
    s.drops = dv.getBigUint64(80, true);
    s.seq = dv.getBigUint64(88, true);
    s.credit = dv.getFloat64(96, true);
    s.flows.set(bytes.subarray(FIXED, FIXED + s.flows.byteLength));
    s.memory.set(bytes.subarray(FIXED + s.flows.byteLength));
    const slotsOk = s.ringSize === 0 ? s.head === 0 && s.tail === 0 : s.head < s.ringSize && s.tail < s.ringSize;
    if (s.ringSize > NIC_MAX_RING || !slotsOk || s.pktSize < NIC_PKT_MIN || s.pktSize > NIC_PKT_MAX || s.pktSize % 4 ||
        s.batch < 1 || !(s.credit >= 0 && s.credit < 1000)) {
      fail('EINVAL', 'NIC state holds out-of-range registers');
    }
    return s;
  }
}
