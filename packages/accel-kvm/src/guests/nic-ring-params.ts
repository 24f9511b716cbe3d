// The parameter block of nic-ring-guest.S: what the VMM chooses for the guest (where its arena,
// ring and BARs go) and the guest's own state beside it, at the offsets its source names.

/** What the VMM chooses. */
export interface NicRingGuestParams {
  /** Guest physical address of the page arena, and its page count (a power of two). */
  readonly arena: number;
  readonly arenaPages: number;
  /** The page generator's seed. */
  readonly seed: number;
  /** Guest physical address of the receive ring, its slots and the packet size (64..4096, a multiple of 4). */
  readonly ring: number;
  readonly slots: number;
  readonly packetSize: number;
  /** Packets per second of the nic's virtual time. */
  readonly rate: number;
  /** Where the guest places BAR0 and BAR2 (below 4 GiB, aligned to their sizes, outside RAM). */
  readonly bar0: number;
  readonly bar2: number;
  /** Progress is reported every `reportMask + 1` page writes. */
  readonly reportMask: number;
  /** The nic's payload seed. */
  readonly nicSeed: number;
  /** Page writes between two polls of the ring. */
  readonly writesPerPoll: number;
  /**
   * Receive with MSI-X interrupts on this vector (0x20-0xfe; the VM needs an in-kernel irqchip),
   * halting between polls until one came; leave out to poll without interrupts.
   */
  readonly msix?: {
    readonly vector: number;
    /** Packets per interrupt. */
    readonly batch: number;
    /** Where the guest puts its GDT and IDT: 4 KiB of RAM. */
    readonly tables: number;
  };
}

/** The block's dword offsets (the guest's P_* symbols). */
export const NIC_RING_PARAM = {
  arena: 0, arenaMask: 4, x: 8, ring: 12, slots: 16, packetSize: 20, rate: 24, bar0: 28, bar2: 32, reportMask: 36,
  nicSeed: 40, writesPerPoll: 44, writes: 48, nextSeq: 52, tail: 56, configAddress: 60,
  vector: 64, irqBatch: 68, tables: 72, interrupts: 76, interruptsSeen: 80,
} as const;
/** The block's size in bytes. */
export const NIC_RING_PARAMS_SIZE = 128;

/** The block for `p`, with the guest's state zeroed. */
export function nicRingParamBlock(p: NicRingGuestParams): Uint8Array {
  const block = new Uint8Array(NIC_RING_PARAMS_SIZE);
  const dv = new DataView(block.buffer);
  const at = NIC_RING_PARAM;
  const set = (offset: number, v: number): void => dv.setUint32(offset, v >>> 0, true);
  set(at.arena, p.arena);
  set(at.arenaMask, p.arenaPages - 1);
  set(at.x, p.seed);
  set(at.ring, p.ring);
  set(at.slots, p.slots);
  set(at.packetSize, p.packetSize);
  set(at.rate, p.rate);
  set(at.bar0, p.bar0);
  set(at.bar2, p.bar2);
  set(at.reportMask, p.reportMask);
  set(at.nicSeed, p.nicSeed);
  set(at.writesPerPoll, p.writesPerPoll);
  if (p.msix) {
    set(at.vector, p.msix.vector);
    set(at.irqBatch, p.msix.batch);
    set(at.tables, p.msix.tables);
  }
  return block;
}

/** The guest's error report (port 0x14) decoded: what went wrong at which sequence number. */
export function nicRingGuestError(report: number): { code: number; what: string; seq: number } {
  const code = report >>> 24;
  const what = ['', 'no nic on bus 0', 'wrong NIC_ID', 'doorbell count', 'sequence number', 'packet length', 'payload', 'no MSI-X capability'][code] ?? 'unknown';
  return { code, what, seq: report & 0xff_ffff };
}
