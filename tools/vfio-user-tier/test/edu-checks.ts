// The checks the tier makes of an edu device behind QEMU, whoever implements it: QEMU's own
// emulated edu (proving the harness) and vmmkit's edu served over vfio-user. One QEMU per suite;
// the cases run in order on it, as a guest would: enumerate, map, DMA, interrupts, reset.

import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EduGuest, EDU_DEVICE, EDU_ID_VALUE, EDU_VENDOR } from '../support/edu-guest.js';
import {
  findFunction, PCI_BAR0, PCI_CLASS_PROG, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY, PCI_INTERRUPT_PIN, PCI_REVISION, PCI_SUBSYSTEM_ID, PCI_SUBSYSTEM_VENDOR_ID, type PciFunction,
} from '../support/pci-guest.js';
import type { QemuPeer } from '../support/qemu-peer.js';
import { RunDir } from '../support/run-dir.js';

/** Guest RAM the checks use (below edu's default 28-bit DMA mask, inside 256 MiB of RAM). */
const RAM_SRC = 0x10_0000n;
const RAM_DST = 0x20_0000n;
const RAM_MSI = 0x30_0000n;
const MSI_DATA = 0x4d5a;
/** q35 routes PCI INTx pins to I/O APIC inputs 16..23. */
const PIRQ_GSIS = [16, 17, 18, 19, 20, 21, 22, 23];

export interface EduSuiteOptions {
  /** Starts QEMU (and whatever serves its edu) with its sockets in `runDir`. */
  readonly start: (runDir: RunDir) => Promise<{ peer: QemuPeer; stop?: () => Promise<void> }>;
  /**
   * What a system reset does to edu's registers: QEMU's own edu has no reset handler, so they
   * survive ('kept'); vmmkit's model returns to power-on state on DEVICE_RESET ('cleared').
   */
  readonly registersOnReset: 'kept' | 'cleared';
}

/** Polls `probe` until it returns true, failing with `what` after `timeoutMs`. */
async function until(what: string, probe: () => Promise<boolean> | boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

interface QueryPciDevice {
  slot: number;
  function: number;
  irq_pin: number;
  class_info: { class: number };
  id: { vendor: number; device: number; subsystem: number; 'subsystem-vendor': number };
  regions: { bar: number; type: string; size: number; address: number; mem_type_64?: boolean; prefetch?: boolean }[];
}

export function eduChecks(options: EduSuiteOptions): void {
  let runDir: RunDir;
  let peer: QemuPeer;
  let stopPeer: (() => Promise<void>) | undefined;
  let pci: PciFunction;
  let edu: EduGuest;

  async function queryEdu(): Promise<QueryPciDevice> {
    const buses = await peer.qmp.execute<{ devices: QueryPciDevice[] }[]>('query-pci');
    const hits = buses.flatMap((b) => b.devices).filter((d) => d.id.vendor === EDU_VENDOR && d.id.device === EDU_DEVICE);
    expect(hits, 'one edu in query-pci').toHaveLength(1);
    return hits[0]!;
  }

  /** What firmware would do: BARs, memory decoding and bus mastering, INTx allowed. */
  async function bringUp(): Promise<void> {
    pci = await findFunction(peer.qtest, EDU_VENDOR, EDU_DEVICE);
    const bars = await pci.assignBars();
    expect(bars.map((b) => [b.index, b.type, b.size])).toEqual([[0, 'mem32', 0x10_0000n]]);
    await pci.write16(PCI_COMMAND, ((await pci.read16(PCI_COMMAND)) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER) & ~PCI_COMMAND_INTX_DISABLE);
    edu = new EduGuest(peer.qtest, pci, bars[0]!.address!);
  }

  beforeAll(async () => {
    runDir = RunDir.create();
    try {
      ({ peer, stop: stopPeer } = await options.start(runDir));
      console.log(`[vfio-user tier] QEMU ${peer.version} up in ${peer.startMs.toFixed(0)} ms`);
    } catch (e) {
      runDir.remove();
      throw e;
    }
  });

  afterAll(async () => {
    try {
      if (stopPeer) await stopPeer();
      else await peer?.stop();
    } finally {
      runDir?.remove();
    }
  });

  it('query-pci lists edu with its ids, class, interrupt pin and one 1 MiB memory BAR', async () => {
    const dev = await queryEdu();
    expect(dev.id['subsystem-vendor']).toBe(0x1af4);
    expect(dev.id.subsystem).toBe(0x1100);
    expect(dev.class_info.class).toBe(0x00ff);
    expect(dev.irq_pin).toBe(1);
    expect(dev.regions.map(({ bar, type, size, mem_type_64, prefetch }) => ({ bar, type, size, mem_type_64, prefetch })))
      .toEqual([{ bar: 0, type: 'memory', size: 0x10_0000, mem_type_64: false, prefetch: false }]);
  });

  it('the guest finds edu on bus 0, reads its config space, places BAR0 and talks to its registers', async () => {
    await bringUp();
    expect(await pci.read8(PCI_REVISION)).toBe(0x10);
    expect((await pci.read32(PCI_CLASS_PROG - 1)) >>> 8).toBe(0x00ff00);
    expect(await pci.read16(PCI_SUBSYSTEM_VENDOR_ID)).toBe(0x1af4);
    expect(await pci.read16(PCI_SUBSYSTEM_ID)).toBe(0x1100);
    expect(await pci.read8(PCI_INTERRUPT_PIN)).toBe(1);
    // QEMU's view of the BAR follows the guest's programming.
    const dev = await queryEdu();
    expect(dev.regions[0]!.address).toBe(Number(edu.bar0));
    expect(await edu.id()).toBe(EDU_ID_VALUE);
    expect(await edu.liveness(0x1234_5678)).toBe(~0x1234_5678 >>> 0);
  });

  it("edu's DMA engine copies guest RAM into its buffer and back into guest RAM elsewhere", async () => {
    const data = new Uint8Array(randomBytes(1024));
    await peer.qtest.write(RAM_SRC, data);
    await peer.qtest.memset(RAM_DST, 2048, 0);
    await edu.copyFromRam(RAM_SRC, data.length, 0x100);
    await edu.copyToRam(RAM_DST + 16n, data.length, 0x100);
    expect(Buffer.from(await peer.qtest.read(RAM_DST + 16n, data.length)).equals(data)).toBe(true);
    // Nothing outside the transfer was written.
    expect((await peer.qtest.read(RAM_DST, 16)).every((b) => b === 0)).toBe(true);
    expect((await peer.qtest.read(RAM_DST + 16n + BigInt(data.length), 16)).every((b) => b === 0)).toBe(true);
  });

  it("with bus mastering off, edu's DMA does not reach guest RAM; back on, it does", async () => {
    const data = new Uint8Array(randomBytes(128));
    await peer.qtest.write(RAM_SRC, data);
    await edu.copyFromRam(RAM_SRC, data.length);
    await peer.qtest.memset(RAM_DST, data.length, 0);
    await pci.write16(PCI_COMMAND, (await pci.read16(PCI_COMMAND)) & ~PCI_COMMAND_MASTER);
    await edu.copyToRam(RAM_DST, data.length);
    expect((await peer.qtest.read(RAM_DST, data.length)).every((b) => b === 0)).toBe(true);
    await pci.enable(PCI_COMMAND_MASTER);
    await edu.copyToRam(RAM_DST, data.length);
    expect(Buffer.from(await peer.qtest.read(RAM_DST, data.length)).equals(data)).toBe(true);
  });

  it('INTx: a raise reaches one of the I/O APIC inputs q35 routes PCI pins to, and the ack lowers it', async () => {
    await peer.qtest.irqInterceptIn('ioapic');
    expect(peer.qtest.raisedIrqs().filter((l) => PIRQ_GSIS.includes(l))).toEqual([]);
    await edu.raise(0x1);
    await until('INTx raised', () => peer.qtest.raisedIrqs().some((l) => PIRQ_GSIS.includes(l)));
    const [line] = peer.qtest.raisedIrqs().filter((l) => PIRQ_GSIS.includes(l));
    expect(await edu.irqStatus()).toBe(0x1);
    await edu.ack(0x1);
    // QEMU's vfio-pci emulates a level-triggered INTx over an edge (the eventfd): it lowers the
    // line at the guest's next access to the device, its EOI, and the server signals again if
    // the device still asserts it. So the guest keeps reading the status until the line is low;
    // QEMU's own edu lowers it at the ack already.
    await until(`IRQ ${line} lowered`, async () => (await edu.irqStatus()) === 0 && !peer.qtest.irqLevel(line!));
  });

  it('MSI: with MSI enabled a raise is a message write, which the guest finds in RAM', async () => {
    await peer.qtest.memset(RAM_MSI, 8, 0);
    await edu.enableMsi(RAM_MSI, MSI_DATA);
    await edu.raise(0x2);
    await until('the MSI message in guest RAM', async () => (await peer.qtest.readl(RAM_MSI)) === MSI_DATA);
    // The message is the interrupt: INTx stays low while MSI is on.
    expect(peer.qtest.raisedIrqs().filter((l) => PIRQ_GSIS.includes(l))).toEqual([]);
    await edu.ack(0x2);
    // A DMA that asks for an interrupt at its end sends the message again.
    await peer.qtest.memset(RAM_MSI, 8, 0);
    await edu.copyToRam(RAM_DST, 64, 0, true);
    await until('the DMA-completion MSI in guest RAM', async () => (await peer.qtest.readl(RAM_MSI)) === MSI_DATA);
    expect(await edu.irqStatus()).toBe(0x100);
    await edu.ack(0x100);
    await edu.disableMsi();
  });

  it("system_reset: QEMU resets edu's PCI state, the guest brings it back, and it works again", async () => {
    await edu.liveness(0x0f0f_0f0f);
    await peer.qmp.execute('system_reset');
    await peer.qmp.waitForEvent('RESET');
    expect(await pci.read16(PCI_COMMAND)).toBe(0);
    expect((await pci.read32(PCI_BAR0)) & ~0xf).toBe(0);
    await bringUp();
    expect(await edu.id()).toBe(EDU_ID_VALUE);
    // edu keeps the complement of the last liveness value: the register tells whether the
    // device model itself was reset.
    const liveness = await peer.qtest.readl(edu.bar0 + 4n);
    expect(liveness >>> 0).toBe(options.registersOnReset === 'kept' ? ~0x0f0f_0f0f >>> 0 : 0);
    // And the device is whole after the reset: a DMA round trip.
    const data = new Uint8Array(randomBytes(64));
    await peer.qtest.write(RAM_SRC, data);
    await edu.copyFromRam(RAM_SRC, 64);
    await edu.copyToRam(RAM_DST, 64);
    expect(Buffer.from(await peer.qtest.read(RAM_DST, 64)).equals(data)).toBe(true);
  });
}

