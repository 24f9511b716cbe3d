// Nothing lost with four processes: this process is the source VMM, the destination VMM is
// fixtures/vfio-user-destination.mjs, and each VM's nic (-device vfio-user-pci) is served by a
// process of its own. The source's nic DMA-writes guest RAM (a memfd its server maps) all through
// precopy; device DMA logging over vfio-user finds those pages; the device state moves over
// MIG_DATA_* and the migration stream over a Unix socket. The destination reports its RAM digest
// when its nic loaded its state: it equals the stopped source's, as does the state its nic's
// server started from, and it runs. A dirty page the tracker drops is caught. Killing the
// destination's nic server or the destination VMM mid-migration fails the migration with a typed
// error saying what failed, the source VM runs on, and this process holds no more fds than before
// and no child process is left.

import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LinuxHost, Vmm } from '@vmmkit/core';
import { consume, dropFirstRingPage, startNic } from './vfio-user-nic-driver.js';
import { ramHash } from '@vmmkit/sim/testing';
import type { VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { vfioUserPlugin } from '@vmmkit/backend-vfio-user';
import { MigrationFailedError, MigrationTransportError, connectMigration, migrateOutgoing, migrationPlugin, type MigrationOptions } from '../src/index.js';
import { startCliNicServer, startNicServer, type CliNicServer, type NicServerProcess } from './vfio-user-processes.js';
import { startDestination, type DestinationProcess } from './vfio-user-destination-process.js';

const onLinux = process.platform === 'linux';
const RAM_BYTES = 2n << 20n;
const fds = (): number => readdirSync('/proc/self/fd').length;
const memfdMappings = (): number => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('/memfd:')).length;
/** The nic receives all through precopy: 32 MiB/s makes the 2 MiB first pass span a few of its server's 10 ms ticks. */
const BUSY: MigrationOptions = { downtimeLimitMs: 0, maxIterations: 4, maxBandwidth: 32 << 20 };
/** For a kill at the second iteration: four more to go, so that it lands while the migration runs. */
const LONGER: MigrationOptions = { ...BUSY, maxIterations: 6 };

/** The process `pid` is gone and reaped (kill(pid, 0) finds no such process). */
function reaped(pid: number | undefined): boolean {
  try {
    process.kill(pid!, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** The whole chain of causes' messages, outermost first. */
function causes(error: unknown): string {
  const out: string[] = [];
  for (let e = error; e instanceof Error; e = e.cause) out.push(`${e.name}: ${e.message}`);
  return out.join(' <- ');
}

describe.skipIf(!onLinux)('migrating a VM with a vfio-user nic to a destination VMM in another process, each nic served by its own process (LinuxHost)', () => {
  const host = onLinux ? new LinuxHost() : undefined!;
  let dir: string | undefined;
  /** Every process a test started, for the census at its end. */
  const started: ChildProcess[] = [];
  const servers: { kill(signal?: NodeJS.Signals): Promise<void> }[] = [];
  const destinations: DestinationProcess[] = [];
  const vms: Vmm[] = [];
  afterEach(async () => {
    started.length = 0;
    for (const vm of vms.splice(0)) await vm.close().catch(() => undefined);
    for (const d of destinations.splice(0)) await d.kill('SIGKILL');
    for (const s of servers.splice(0)) await s.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  /**
   * The source VM (this process) with its nic receiving, and the destination VMM process
   * listening; each nic served by its own process: `vmmkit serve --device nic`, or (`state`) the
   * fixture that also reports its model's device state.
   */
  async function setUp(servedBy: 'state'): Promise<{ source: Vmm; nic: VfioPciDevice; src: NicServerProcess; dst: NicServerProcess; destination: DestinationProcess; uri: string }>;
  async function setUp(servedBy: 'cli'): Promise<{ source: Vmm; nic: VfioPciDevice; src: CliNicServer; dst: CliNicServer; destination: DestinationProcess; uri: string }>;
  async function setUp(servedBy: 'state' | 'cli') {
    dir = mkdtempSync(join(tmpdir(), 'vmmkit-vu-proc-'));
    const serve = servedBy === 'cli' ? startCliNicServer : startNicServer;
    const src = await serve(join(dir, 'src.sock'));
    servers.push(src);
    started.push(src.child);
    const dst = await serve(join(dir, 'dst.sock'));
    servers.push(dst);
    started.push(dst.child);
    const uri = `unix:${join(dir, 'migration.sock')}`;
    const destination = await startDestination(uri, join(dir, 'dst.sock'), RAM_BYTES);
    destinations.push(destination);
    started.push(destination.child);
    const source = await Vmm.create({
      host, plugins: [vfioUserPlugin(), migrationPlugin()], memory: [{ gpa: 0n, size: RAM_BYTES, name: 'ram' }], memoryBacking: 'memfd',
    });
    vms.push(source);
    const nic = (await source.addDevice(`vfio-user-pci,socket=${join(dir, 'src.sock')},id=nic0`)) as VfioPciDevice;
    await startNic(nic);
    return { source, nic, src, dst, destination, uri };
  }

  /** Migrate to the destination process with the driver consuming at every iteration. */
  const migrateBusy = async (source: Vmm, nic: VfioPciDevice, uri: string, options: MigrationOptions = BUSY) => {
    const driver: Promise<void>[] = [];
    const consuming = () => driver.push(consume(nic).catch(() => undefined));
    source.events.on('migration:iteration', consuming);
    try {
      return await migrateOutgoing(source, await connectMigration(uri, { timeoutMs: 30_000 }), options);
    } finally {
      source.events.off('migration:iteration', consuming);
      await Promise.allSettled(driver);
    }
  };

  /** Close every VM and process this test started; then this process is as it was. */
  const tearDown = async (source: Vmm, fdsBefore: number): Promise<void> => {
    await source.close();
    vms.length = 0;
    for (const d of destinations.splice(0)) expect(await d.close()).toBe(0);
    for (const s of servers.splice(0)) await s.kill();
    expect(memfdMappings()).toBe(0);
    expect(fds()).toBe(fdsBefore);
    expect(started.splice(0).filter((c) => !reaped(c.pid)).map((c) => c.spawnfile)).toEqual([]);
  };

  it.for([false, true])('RAM and device state arrive whole in the destination process, by device DMA logging over vfio-user; a dropped dirty page is caught (dropped: %s)', { timeout: 120_000 }, async (dropOne) => {
    const fdsBefore = fds();
    const { source, nic, src, dst, destination, uri } = await setUp('state');
    await new Promise((r) => setTimeout(r, 30)); // the nic receives before the migration starts
    if (dropOne) dropFirstRingPage(nic, source.memory);
    const result = await migrateBusy(source, nic, uri);
    expect(result.containers.map((c) => [c.backend, c.strategy])).toEqual([['vfio-iommu-user', 'device']]);
    expect(result.containers[0]!.dirtyPages).toBeGreaterThan(0); // what only the nic's DMA log knew
    expect(result.deviceBytes).toBeGreaterThan(0);
    expect(result.iterations).toBe(4);
    expect(source.running).toBe(false);
    const report = await destination.report;
    expect(report).toMatchObject({ ok: true, running: true, deviceBytes: result.deviceBytes });
    // The destination's nic started from what it loaded, which is the stopped source's state.
    const [stopped, loaded] = await Promise.all([src.state(), dst.startedState()]);
    expect(stopped.byteLength).toBeGreaterThan(0);
    expect(loaded.toString('hex')).toBe(stopped.toString('hex'));
    expect(report.atLoad).toMatch(/^[0-9a-f]{64}$/);
    if (dropOne) expect(report.atLoad).not.toBe(ramHash(source.memory));
    else expect(report.atLoad).toBe(ramHash(source.memory));
    await tearDown(source, fdsBefore);
  });

  it('the destination\'s nic server killed mid-migration: the source fails with a typed error naming that device and runs on; nothing left behind', { timeout: 120_000 }, async () => {
    const fdsBefore = fds();
    const { source, nic, dst, destination, uri } = await setUp('cli');
    source.events.on('migration:iteration', ({ iteration }) => {
      if (iteration === 2) void dst.kill('SIGKILL');
    });
    const error = await migrateBusy(source, nic, uri, LONGER).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(MigrationFailedError);
    expect(causes(error)).toContain(destination.device); // the destination said which device failed
    expect(source.running).toBe(true); // the guest goes on where it was
    expect(nic.vfio.failure).toBeUndefined(); // the source's nic is unharmed
    const report = await destination.report;
    expect(report).toMatchObject({ ok: false, running: false, deviceFailure: { device: destination.device } });
    // The server closed the connection, reset it with a message in flight, or was gone when the next one went out.
    expect(['ENOTCONN', 'ECONNRESET', 'EPIPE']).toContain(report.deviceFailure!.errno);
    expect(report.failures).toEqual([expect.stringContaining(destination.device)]);
    await consume(nic); // the source's nic still answers
    source.memory.write(0n, new Uint8Array([1])); // its RAM is still its own
    await tearDown(source, fdsBefore);
  });

  it('the destination VMM process killed mid-migration: the source fails with a typed error saying the destination went away and runs on; nothing left behind', { timeout: 120_000 }, async () => {
    const fdsBefore = fds();
    const { source, nic, destination, uri } = await setUp('cli');
    source.events.on('migration:iteration', ({ iteration }) => {
      if (iteration === 2) void destination.kill('SIGKILL');
    });
    const error = await migrateBusy(source, nic, uri, LONGER).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(MigrationFailedError);
    expect(error).toMatchObject({ side: 'source' });
    // The connection to it, named by its address, was lost (a write's EPIPE or a read's ECONNRESET) or closed.
    const cause = (error as MigrationFailedError).cause;
    expect(cause).toBeInstanceOf(MigrationTransportError);
    expect(cause).toMatchObject({ transport: uri });
    expect(String((cause as Error).message)).toMatch(/: connection (lost|closed)/);
    await expect(destination.report).rejects.toThrow(/exited \(SIGKILL\)/);
    expect(source.running).toBe(true);
    expect(nic.vfio.failure).toBeUndefined();
    await consume(nic);
    source.memory.write(0n, new Uint8Array([1]));
    // The killed process is reaped; closing it again is a no-op.
    expect(destination.child.signalCode).toBe('SIGKILL');
    await source.close();
    vms.length = 0;
    destinations.length = 0;
    for (const s of servers.splice(0)) await s.kill();
    expect(memfdMappings()).toBe(0);
    expect(fds()).toBe(fdsBefore);
    expect(started.splice(0).filter((c) => !reaped(c.pid)).map((c) => c.spawnfile)).toEqual([]);
  });
});
