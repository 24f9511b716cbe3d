// A whole VM whose nic is served by another process (-device vfio-user-pci) migrates to a
// destination VM whose nic is served by a third: nothing is lost. The nic DMA-writes guest RAM (a
// memfd its server maps) all through precopy, the guest driver consuming its ring every
// iteration; device DMA logging over vfio-user is what finds those pages; the device state moves
// over MIG_DATA_*. At switchover the destination's RAM and device state equal the source's byte
// for byte, and a dirty page the tracker deliberately drops is caught. A server without
// migration blocks the VM's migration, naming the device; a server that dies mid-migration fails
// it with a typed error naming the device while the source VM runs on, with nothing left behind.

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LinuxHost, Vmm } from '@vmmkit/core';
import { consume, dropFirstRingPage, startNic } from './vfio-user-nic-driver.js';
import { ramHash } from '@vmmkit/sim/testing';
import type { VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { vfioUserPlugin } from '@vmmkit/backend-vfio-user';
import { MigrationBlockedError, MigrationFailedError, migrate, migrationPlugin } from '../src/index.js';
import { startNicServer, type NicServerProcess } from './vfio-user-processes.js';

const onLinux = process.platform === 'linux';
const fds = (): number => readdirSync('/proc/self/fd').length;
const memfdMappings = (): number => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('/memfd:')).length;

async function vmOn(host: LinuxHost, incoming = false): Promise<Vmm> {
  return Vmm.create({
    host, plugins: [vfioUserPlugin(), migrationPlugin()], memory: [{ gpa: 0n, size: 2n << 20n, name: 'ram' }], memoryBacking: 'memfd', incoming,
  });
}

describe.skipIf(!onLinux)('migrating a VM with a vfio-user nic served by another process (LinuxHost)', () => {
  const host = onLinux ? new LinuxHost() : undefined!;
  let dir: string | undefined;
  const servers: NicServerProcess[] = [];
  const vms: Vmm[] = [];
  afterEach(async () => {
    for (const vm of vms.splice(0)) await vm.close().catch(() => undefined);
    for (const s of servers.splice(0)) await s.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  const serve = async (name: string, migration = true): Promise<{ path: string; server: NicServerProcess }> => {
    dir ??= mkdtempSync(join(tmpdir(), 'vmmkit-vu-vm-'));
    const path = join(dir, `${name}.sock`);
    const server = await startNicServer(path, { migration });
    servers.push(server);
    return { path, server };
  };

  /** A source VM with its nic receiving, and an incoming destination VM, each nic served by its own process. */
  const setUp = async (): Promise<{ source: Vmm; destination: Vmm; nic: VfioPciDevice; src: NicServerProcess; dst: NicServerProcess }> => {
    const src = await serve('src');
    const dst = await serve('dst');
    const source = await vmOn(host);
    vms.push(source);
    const destination = await vmOn(host, true);
    vms.push(destination);
    const nic = (await source.addDevice(`vfio-user-pci,socket=${src.path},id=nic0`)) as VfioPciDevice;
    await destination.addDevice(`vfio-user-pci,socket=${dst.path},id=nic0`);
    await startNic(nic);
    return { source, destination, nic, src: src.server, dst: dst.server };
  };

  /** Close the VMs and their servers; then this process holds what it held before (`fdsBefore` fds, no memfd mapping). */
  const tearDown = async (fdsBefore: number): Promise<void> => {
    for (const vm of vms.splice(0)) await vm.close();
    for (const s of servers.splice(0)) await s.kill();
    expect(memfdMappings()).toBe(0);
    expect(fds()).toBe(fdsBefore);
  };

  /** Migrate with the nic receiving throughout precopy (32 MiB/s: the 2 MiB first pass takes a few of the server's 10 ms ticks); the driver consumes at every iteration. */
  const migrateBusy = async (source: Vmm, destination: Vmm, nic: VfioPciDevice) => {
    const driver: Promise<void>[] = [];
    source.events.on('migration:iteration', () => driver.push(consume(nic)));
    try {
      return await migrate(source, destination, { downtimeLimitMs: 0, maxIterations: 4, maxBandwidth: 32 << 20 });
    } finally {
      await Promise.allSettled(driver);
    }
  };

  it.for([false, true])('RAM and device state arrive whole, by device DMA logging over vfio-user; a dropped dirty page is caught (dropped: %s)', { timeout: 60_000 }, async (dropOne) => {
    const fdsBefore = fds();
    const { source, destination, nic, src, dst } = await setUp();
    await new Promise((r) => setTimeout(r, 30)); // the nic receives before the migration starts
    if (dropOne) dropFirstRingPage(nic, source.memory);
    // The destination's RAM when its nic has loaded its state and not yet run (it receives packets
    // of its own once it runs): what it holds at switchover.
    let arrived: string | undefined;
    destination.events.on('migration:device-state', (e) => {
      if (e.to === 'STOP') arrived = ramHash(destination.memory);
    });
    const result = await migrateBusy(source, destination, nic);
    expect(result.containers.map((c) => [c.backend, c.strategy])).toEqual([['vfio-iommu-user', 'device']]);
    expect(result.containers[0]!.dirtyPages).toBeGreaterThan(0); // what only the nic's DMA log knew
    expect(result.deviceBytes).toBeGreaterThan(0);
    expect(result.iterations).toBe(4);
    expect([source.running, destination.running]).toEqual([false, true]);
    // The destination's nic started from what it loaded, which is the stopped source's state.
    const [stopped, loaded] = await Promise.all([src.state(), dst.startedState()]);
    expect(stopped.byteLength).toBeGreaterThan(0);
    expect(loaded.equals(stopped)).toBe(true);
    expect(arrived).toBeDefined();
    if (dropOne) expect(arrived).not.toBe(ramHash(source.memory));
    else expect(arrived).toBe(ramHash(source.memory));
    await tearDown(fdsBefore);
  });

  it('a server without migration blocks the VM\'s migration, naming the device', { timeout: 30_000 }, async () => {
    const plain = await serve('plain', false);
    const dst = await serve('dst');
    const source = await vmOn(host);
    vms.push(source);
    const destination = await vmOn(host, true);
    vms.push(destination);
    await source.addDevice(`vfio-user-pci,socket=${plain.path},id=nic0`);
    await destination.addDevice(`vfio-user-pci,socket=${dst.path},id=nic0`);
    const error = await migrate(source, destination).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(MigrationBlockedError);
    expect(String((error as Error).message)).toContain(`vfio-user:${plain.path}: its vfio-user server does not support migration`);
    expect(source.running).toBe(true);
  });

  it.for(['source', 'destination'] as const)('the %s\'s server killed mid-migration: a typed error naming the device, the source VM runs on, nothing left behind', { timeout: 60_000 }, async (side) => {
    const fdsBefore = fds();
    const { source, destination, nic, src, dst } = await setUp();
    const dying = side === 'source' ? nic : (destination.devices[0] as VfioPciDevice);
    const name = dying.vfio.name;
    source.events.on('migration:iteration', ({ iteration }) => {
      if (iteration === 2) void (side === 'source' ? src : dst).kill('SIGKILL');
    });
    // The side whose device died says which device it was.
    const failures: string[] = [];
    (side === 'source' ? source : destination).events.on('migration:failed', (e) => failures.push(e.error));
    const error = await migrate(source, destination, { downtimeLimitMs: 0, maxIterations: 6, maxBandwidth: 32 << 20 }).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(MigrationFailedError);
    expect(failures).toEqual([expect.stringContaining(name)]);
    // The server closed the connection, reset it with a message in flight, or was gone when a message was sent.
    expect(['ENOTCONN', 'ECONNRESET', 'EPIPE']).toContain(dying.vfio.failure?.errno);
    expect([source.running, destination.running]).toEqual([true, false]); // the guest goes on where it was
    expect(dying.vfio.failure).toMatchObject({ device: name });
    if (side === 'destination') expect(nic.vfio.failure).toBeUndefined(); // the source's nic is unharmed
    source.memory.write(0n, new Uint8Array([1])); // its RAM is still its own
    await tearDown(fdsBefore);
  });
});
