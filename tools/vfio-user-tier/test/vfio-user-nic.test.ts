// vmmkit's NIC model (packages/sim/src/devices/nic.ts) served over vfio-user to QEMU 11.1: two
// BARs (registers with the MSI-X table; 64-bit prefetchable device memory with a register page
// in it), a receive engine that DMA-writes packets into a ring in guest RAM, MSI-X, and reset.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  makePacket, NIC_BAR0_SIZE, NIC_BAR2_SIZE, NIC_CTRL, NIC_CTRL_IRQ_EN, NIC_CTRL_RX_EN, NIC_DOORBELL, NIC_ID,
  NIC_ID_VALUE, NIC_IRQ_BATCH, NIC_IRQ_RX, NIC_IRQ_STATUS, NIC_RATE_PPS, NIC_RX_HEAD, NIC_RX_PACKETS, NIC_RX_PKT_SIZE,
  NIC_RX_RING_BASE, NIC_RX_RING_SIZE, NIC_SEED, NIC_STATUS, NIC_STATUS_LINK_UP,
} from '@vmmkit/sim';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeviceServer, serverMissingReason } from '../support/device-server.js';
import { preparedQemuVersion } from '../support/paths.js';
import {
  findFunction, PCI_BAR0, PCI_CLASS_PROG, PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, type GuestBar, type PciFunction,
} from '../support/pci-guest.js';
import { QemuPeer } from '../support/qemu-peer.js';
import { RunDir } from '../support/run-dir.js';
import { vfioUserDevice } from './vfio-user-device.js';

const NIC_VENDOR = 0x1234;
const NIC_DEVICE = 0x4e49;
const RING = 0x40_0000n;
const SLOTS = 8;
const PKT = 64;
const RAM_MSIX = 0x30_0000n;
const MSIX_DATA = 0x6e69;

const version = preparedQemuVersion();
const reason = serverMissingReason() ?? (version ? undefined : 'no QEMU root: run tools/vfio-user-tier/prepare.sh (npm run test:vfio-user does)');
if (reason) console.warn(`[vfio-user tier] vmmkit's served nic skipped: ${reason}`);

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

describe.skipIf(reason !== undefined)(`vmmkit's nic over vfio-user to QEMU (${version ?? reason})`, () => {
  let runDir: RunDir;
  let server: DeviceServer;
  let peer: QemuPeer;
  let pci: PciFunction;
  let bars: GuestBar[];
  let bar0: bigint;
  const reg = async (offset: number): Promise<number> => (await peer.qtest.readl(bar0 + BigInt(offset))) >>> 0;
  const setReg = (offset: number, value: number): Promise<void> => peer.qtest.writel(bar0 + BigInt(offset), value);

  async function bringUp(): Promise<void> {
    pci = await findFunction(peer.qtest, NIC_VENDOR, NIC_DEVICE);
    bars = await pci.assignBars();
    await pci.enable(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    bar0 = bars.find((b) => b.index === 0)!.address!;
  }

  beforeAll(async () => {
    runDir = RunDir.create();
    try {
      server = await DeviceServer.start('nic', runDir.hostSocket('nic.sock'));
      peer = await QemuPeer.start({ runDir, devices: [vfioUserDevice(runDir.rootSocket('nic.sock'))] });
      console.log(`[vfio-user tier] QEMU ${peer.version} with the served nic up in ${peer.startMs.toFixed(0)} ms`);
    } catch (e) {
      await server?.stop();
      runDir.remove();
      throw e;
    }
  });

  afterAll(async () => {
    try {
      await peer?.stop();
    } finally {
      await server?.stop();
      runDir?.remove();
    }
  });

  it("query-pci lists the nic with the model's ids, class and both BARs", async () => {
    const buses = await peer.qmp.execute<{ devices: { id: { vendor: number; device: number }; class_info: { class: number }; regions: Record<string, unknown>[] }[] }[]>('query-pci');
    const nic = buses.flatMap((b) => b.devices).find((d) => d.id.vendor === NIC_VENDOR && d.id.device === NIC_DEVICE);
    expect(nic, 'the nic in query-pci').toBeDefined();
    expect(nic!.class_info.class).toBe(0x0200);
    expect(nic!.regions.map(({ bar, type, size, mem_type_64, prefetch }) => ({ bar, type, size, mem_type_64, prefetch }))).toEqual([
      { bar: 0, type: 'memory', size: NIC_BAR0_SIZE, mem_type_64: false, prefetch: false },
      { bar: 2, type: 'memory', size: NIC_BAR2_SIZE, mem_type_64: true, prefetch: true },
    ]);
  });

  it('the guest places both BARs and reaches registers, device memory and the doorbell', async () => {
    await bringUp();
    expect(bars.map((b) => [b.index, b.type, b.prefetchable, b.size])).toEqual([
      [0, 'mem32', false, BigInt(NIC_BAR0_SIZE)],
      [2, 'mem64', true, BigInt(NIC_BAR2_SIZE)],
    ]);
    expect((await pci.read32(PCI_CLASS_PROG - 1)) >>> 8).toBe(0x020000);
    expect(await reg(NIC_ID)).toBe(NIC_ID_VALUE);
    expect((await reg(NIC_STATUS)) & NIC_STATUS_LINK_UP).toBe(NIC_STATUS_LINK_UP);
    const bar2 = bars.find((b) => b.index === 2)!.address!;
    const pattern = new Uint8Array(256).map((_, i) => (i * 7 + 3) & 0xff);
    await peer.qtest.write(bar2 + 0x100n, pattern);
    expect(await peer.qtest.read(bar2 + 0x100n, 256)).toEqual(pattern);
    const rang = await peer.qtest.readl(bar2 + BigInt(NIC_DOORBELL));
    await peer.qtest.writel(bar2 + BigInt(NIC_DOORBELL), 1);
    expect(await peer.qtest.readl(bar2 + BigInt(NIC_DOORBELL))).toBe(rang + 1);
  });

  it('the receive engine DMA-writes packets into the ring in guest RAM and signals MSI-X', async () => {
    await peer.qtest.memset(RING, SLOTS * PKT, 0);
    await peer.qtest.memset(RAM_MSIX, 8, 0);
    await pci.enableMsix(bars, 0, RAM_MSIX, MSIX_DATA);
    await setReg(NIC_RX_RING_BASE, Number(RING));
    await setReg(NIC_RX_RING_BASE + 4, 0);
    await setReg(NIC_RX_RING_SIZE, SLOTS);
    await setReg(NIC_RX_PKT_SIZE, PKT);
    await setReg(NIC_IRQ_BATCH, 1);
    await setReg(NIC_RATE_PPS, 1000);
    await setReg(NIC_CTRL, NIC_CTRL_RX_EN | NIC_CTRL_IRQ_EN);
    await until('a packet in the ring', async () => (await reg(NIC_RX_HEAD)) > 0);
    await until('the MSI-X message in guest RAM', async () => (await peer.qtest.readl(RAM_MSIX)) === MSIX_DATA);
    expect((await reg(NIC_IRQ_STATUS)) & NIC_IRQ_RX).toBe(NIC_IRQ_RX);
    expect(await reg(NIC_RX_PACKETS)).toBeGreaterThan(0);
    const seed = await reg(NIC_SEED);
    expect(await peer.qtest.read(RING, PKT)).toEqual(makePacket(0n, PKT, seed));
    await setReg(NIC_CTRL, 0);
  });

  it("system_reset: QEMU resets the nic's PCI state and the model returns to power-on state", async () => {
    await peer.qmp.execute('system_reset');
    await peer.qmp.waitForEvent('RESET');
    expect(await pci.read16(PCI_COMMAND)).toBe(0);
    expect((await pci.read32(PCI_BAR0)) & ~0xf).toBe(0);
    await bringUp();
    expect(await reg(NIC_ID)).toBe(NIC_ID_VALUE);
    expect(await reg(NIC_CTRL)).toBe(0);
    expect(await reg(NIC_RX_HEAD)).toBe(0);
    expect(await reg(NIC_RX_RING_SIZE)).toBe(0);
  });

  it('the server outlived the whole session', () => {
    expect(server.running, server.output).toBe(true);
  });
});
