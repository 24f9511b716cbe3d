// Nothing is lost with separate processes: a nic served by one process migrates to a nic served
// by another, this process being both VMMs' client over real Unix sockets. The nic DMA-writes
// guest RAM (a memfd its server maps) all through precopy; device DMA logging over vfio-user is
// the only thing that says which pages to send again; the device state moves over MIG_DATA_*. At
// switchover the destination's RAM and device state equal the source's byte for byte — and a
// dirty page deliberately dropped is caught. (The same over a whole VM with vfio-user-pci waits
// for the device model to run over vfio-user.)

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LinuxHost, VfioError, vfioMigrationVerdict, type GuestMemory } from '@vmmkit/core';
import { NIC_RX_HEAD, NIC_RX_TAIL } from '@vmmkit/sim';
import { VFIO_PCI_BAR0_REGION_INDEX } from '@vmmkit/core/uapi';
import { VfioMigration } from '@vmmkit/migration';
import { connectNic, startNicServer, type NicServerProcess, type RemoteNic } from './vfio-user-processes.js';
import { RAM_SIZE, startNicTraffic } from './vfio-user-rig.js';

const onLinux = process.platform === 'linux';
const PAGE = 4096;
const fds = (): number => readdirSync('/proc/self/fd').length;
const memfdMappings = (): number => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('/memfd:guest-ram')).length;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A broken tracker's memory: the page it forgets (-1 until it picks the first one it sees). */
interface Forgetful {
  lost: number;
}

/**
 * Copy the pages the source's dirty log marks to the destination and clear them; returns how
 * many. With `forget`, the first dirty page seen is never sent again, then or later.
 */
function sendDirty(from: GuestMemory, to: GuestMemory, forget?: Forgetful): number {
  const dirty = from.blocks[0]!.dirty!;
  let sent = 0;
  dirty.forEachSetBit((page) => {
    if (forget && forget.lost < 0) forget.lost = page;
    if (page === forget?.lost) return;
    to.write(BigInt(page * PAGE), from.read(BigInt(page * PAGE), PAGE));
    sent++;
  });
  dirty.clear();
  return sent;
}

/** The guest driver: consume every received packet, so the nic keeps writing the ring. */
async function consume(nic: RemoteNic): Promise<void> {
  const io = nic.device.io;
  const head = await io.regionRead(VFIO_PCI_BAR0_REGION_INDEX, BigInt(NIC_RX_HEAD), 4);
  await io.regionWrite(VFIO_PCI_BAR0_REGION_INDEX, BigInt(NIC_RX_TAIL), head);
}

interface Outcome {
  readonly ramEqual: boolean;
  readonly srcState: Buffer;
  readonly dstState: Buffer;
  /** Pages sent again after the first full pass (what only DMA logging knew about). */
  readonly resent: number;
}

/** Migrate the nic and its guest RAM across processes; `dropOne` loses one dirty page (a broken tracker). */
async function migrateAcross(host: LinuxHost, dir: string, dropOne: boolean): Promise<Outcome> {
  const servers: NicServerProcess[] = [];
  const nics: RemoteNic[] = [];
  try {
    servers.push(await startNicServer(join(dir, 'src.sock')), await startNicServer(join(dir, 'dst.sock')));
    const src = await connectNic(host, join(dir, 'src.sock'), 'src-nic');
    nics.push(src);
    const dst = await connectNic(host, join(dir, 'dst.sock'), 'dst-nic');
    nics.push(dst);
    const tracking = src.container.dirtyTracking;
    const forget: Forgetful | undefined = dropOne ? { lost: -1 } : undefined;
    expect(tracking.decide().strategy).toBe('device');
    const save = new VfioMigration(src.device, src.events);
    const load = new VfioMigration(dst.device, dst.events);
    const forward = async (): Promise<void> => {
      for (let got = await save.readChunk(); got !== 'empty' && got !== 'end'; got = await save.readChunk()) await load.writeChunk(got);
    };

    src.memory.startDirtyLog();
    await tracking.start();
    await startNicTraffic(src, 256); // 256 slots of 256 bytes: pages 0x40..0x4f
    await load.loadSetup();
    await save.saveSetup();
    // The first pass sends all of RAM while the nic writes on.
    dst.memory.write(0n, src.memory.read(0n, Number(RAM_SIZE)));
    await forward();
    let resent = 0;
    for (let pass = 0; pass < 3; pass++) {
      await sleep(30); // the server's clock ticks every 10 ms: the nic receives meanwhile
      await consume(src);
      await tracking.sync(true);
      resent += sendDirty(src.memory, dst.memory, forget);
      await forward();
    }
    await sleep(30);
    await consume(src);
    await sleep(30);
    // Switchover: the device stops, the last sync is the last word on what it wrote.
    await save.switchover();
    await tracking.sync(false);
    resent += sendDirty(src.memory, dst.memory, forget);
    await forward();
    await save.saveCleanup();
    await tracking.stop();
    await load.finishLoad();
    const ramEqual = Buffer.from(dst.memory.read(0n, Number(RAM_SIZE))).equals(Buffer.from(src.memory.read(0n, Number(RAM_SIZE))));
    const [srcState, dstState] = await Promise.all(servers.map((s) => s.state()));
    await load.start(); // the destination's nic runs from the state it loaded
    return { ramEqual, srcState: srcState!, dstState: dstState!, resent };
  } finally {
    for (const nic of nics) await nic.close();
    for (const server of servers) await server.kill();
  }
}

describe.skipIf(!onLinux)('nothing is lost: a vfio-user nic served by another process migrates to one served by a third (LinuxHost)', () => {
  const host = onLinux ? new LinuxHost() : undefined!;

  it.for([false, true])('RAM dirtied by the nic\'s DMA and the device state arrive whole; a dropped dirty page is caught (dropped: %s)', { timeout: 30_000 }, async (dropOne) => {
    const dir = mkdtempSync(join(tmpdir(), 'vmmkit-vu-mig-'));
    const fdsBefore = fds();
    try {
      const outcome = await migrateAcross(host, dir, dropOne);
      expect(outcome.resent).toBeGreaterThan(0); // the nic wrote pages after the first pass, and DMA logging said which
      expect(outcome.srcState.byteLength).toBeGreaterThan(0);
      expect(outcome.dstState.equals(outcome.srcState)).toBe(true);
      expect(outcome.ramEqual).toBe(!dropOne);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(memfdMappings()).toBe(0);
    expect(fds()).toBe(fdsBefore);
  });

  it('a server process without migration: the device blocks migration with a reason naming it', { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmmkit-vu-mig-'));
    const fdsBefore = fds();
    const server = await startNicServer(join(dir, 'plain.sock'), { migration: false });
    try {
      const nic = await connectNic(host, join(dir, 'plain.sock'), 'plain-nic');
      try {
        expect([nic.device.migrationFlags, nic.device.dmaLoggingSupported]).toEqual([0, false]);
        expect(vfioMigrationVerdict(nic.device).blocker).toMatch(/^plain-nic: its vfio-user server does not support migration/);
      } finally {
        await nic.close();
      }
    } finally {
      await server.kill();
      rmSync(dir, { recursive: true, force: true });
    }
    expect(fds()).toBe(fdsBefore);
  });

  it('a source server process killed mid-precopy: typed errors naming the device, the guest RAM still ours, nothing left behind', { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmmkit-vu-mig-'));
    const fdsBefore = fds();
    const server = await startNicServer(join(dir, 'src.sock'));
    try {
      const src = await connectNic(host, join(dir, 'src.sock'), 'src-nic');
      const warnings: string[] = [];
      src.events.on('vfio:warning', (e) => warnings.push(e.message));
      try {
        const tracking = src.container.dirtyTracking;
        src.memory.startDirtyLog();
        await tracking.start();
        await startNicTraffic(src);
        const save = new VfioMigration(src.device, src.events);
        await save.saveSetup();
        await save.readChunk();
        await server.kill('SIGKILL');
        const read = await save.readChunk().then(() => undefined, (e: unknown) => e);
        expect(read).toBeInstanceOf(VfioError);
        expect(read).toMatchObject({ device: 'src-nic', errno: 'ENOTCONN' });
        await expect(tracking.sync(true)).rejects.toMatchObject({ name: 'VfioError', errno: 'ENOTCONN' });
        expect(src.device.failed).toBe(true);
        // Giving up the migration: the device cannot be put back, and the error says which one.
        await expect(save.resumeRunning()).rejects.toMatchObject({ name: 'VfioError', device: 'src-nic' });
        await tracking.stop(); // the server's DMA log went with it: nothing is left to stop
        expect(tracking.state).toBe('stopped');
        src.memory.write(0n, new Uint8Array([1, 2, 3])); // the VM's memory is still ours to use
        expect(warnings.length).toBeGreaterThan(0);
      } finally {
        await src.close();
      }
    } finally {
      await server.kill();
      rmSync(dir, { recursive: true, force: true });
    }
    expect(memfdMappings()).toBe(0);
    expect(fds()).toBe(fdsBefore);
  });
});
