// What a user sees of a migration: the plan before it starts, progress per iteration with the
// tracker that found each dirty page, convergence against the downtime limit, and the same
// migration over TCP and Unix sockets.

import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SimHost } from '@vmmkit/sim';
import { NIC_A, NIC_B, SimGuest, ramHash, simMachine } from '@vmmkit/sim/testing';
import {
  connectMigration, listenMigration, migrate, migrateIncoming, migrateOutgoing, type MigrationProgress, type MigrationResult,
} from '../src/index.js';
import { addNic, vmOn } from './machines.js';

async function busyPair() {
  const srcHost = new SimHost(simMachine());
  const dstHost = new SimHost(simMachine());
  const source = await vmOn(srcHost);
  const destination = await vmOn(dstHost, { incoming: true });
  const a = await addNic(source, NIC_A, 'iommufd');
  const b = await addNic(source, NIC_B, 'legacy', ',x-device-dirty-page-tracking=off');
  await addNic(destination, NIC_A, 'iommufd');
  await addNic(destination, NIC_B, 'legacy', ',x-device-dirty-page-tracking=off');
  const workload = new SimGuest(source, srcHost, [{ nic: a, ring: 0x10_0000n }, { nic: b, ring: 0x20_0000n }]);
  await workload.setUpNics();
  source.events.on('migration:iteration', () => void workload.step());
  return { srcHost, dstHost, source, destination, workload };
}

describe('progress', () => {
  it('reports the plan, each sync by tracker, each pass, the switchover and the result', async () => {
    const { source, destination } = await busyPair();
    const seen: string[] = [];
    const progress: MigrationProgress[] = [];
    const syncs: { guestWrites: number; containers: readonly { strategy: string; pages: number }[] }[] = [];
    source.events.on('migration:started', (e) => seen.push(`started ${e.plan.containers.map((c) => c.strategy).sort().join('+')}`));
    source.events.on('migration:iteration', (e) => seen.push(`iteration ${e.iteration}`));
    source.events.on('migration:dirty-sync', (e) => {
      seen.push(`sync ${e.phase}`);
      syncs.push(e);
    });
    source.events.on('migration:progress', (e) => {
      seen.push(`progress ${e.phase}`);
      progress.push(e);
    });
    source.events.on('migration:switchover', (e) => seen.push(`switchover converged=${e.converged}`));
    let completed: MigrationResult | undefined;
    source.events.on('migration:completed', (r) => (completed = r));
    const result = await migrate(source, destination, { maxIterations: 3, downtimeLimitMs: 0 });
    expect(seen).toEqual([
      'started device+iommu',
      'iteration 1', 'progress precopy',
      'iteration 2', 'sync precopy', 'progress precopy',
      'iteration 3', 'sync precopy', 'progress precopy',
      'iteration 4', 'sync precopy',
      'switchover converged=false', 'sync stop-copy', 'progress stop-copy',
    ]);
    expect(completed).toBe(result);
    // The first pass sends all of RAM (48 MiB), zero pages as markers only.
    expect(progress[0]!.pagesSent + progress[0]!.zeroPages).toBe((48 << 20) / 4096);
    expect(progress[0]!.zeroPages).toBeGreaterThan(progress[0]!.pagesSent);
    // Later syncs find the guest's writes and each nic's DMA, per tracker.
    for (const s of syncs.slice(0, 2)) {
      expect(s.guestWrites).toBeGreaterThan(0);
      expect(s.containers.map((c) => c.strategy).sort()).toEqual(['device', 'iommu']);
      for (const c of s.containers) expect(c.pages, c.strategy).toBeGreaterThan(0);
    }
    // The stop-copy sync does not count again what the deciding sync found: the guest wrote
    // nothing in between (it writes only at iteration starts here).
    expect(syncs.at(-1)!.guestWrites).toBe(0);
    expect(result.iterations).toBe(3);
    expect(result.pagesSent).toBe(progress.reduce((n, p) => n + p.pagesSent, 0));
    expect(result.containers.map((c) => c.dirtyPages).every((n) => n > 0)).toBe(true);
    expect(result.downtimeMs).toBeGreaterThan(0);
    expect(ramHash(destination.memory)).toBe(ramHash(source.memory));
    await source.close();
    await destination.close();
  });

  it('switches over once the expected downtime fits the limit', async () => {
    const { source, destination } = await busyPair();
    const result = await migrate(source, destination, { downtimeLimitMs: 2000, maxBandwidth: 256 << 20 });
    expect(result.converged).toBe(true);
    expect(result.iterations).toBeLessThan(30);
    expect(result.expectedDowntimeMs).toBeLessThanOrEqual(2000);
    expect(ramHash(destination.memory)).toBe(ramHash(source.memory));
    await source.close();
    await destination.close();
  });
});

describe.each([
  ['TCP', () => 'tcp:127.0.0.1:0'],
  ['a Unix socket', () => `unix:${join(tmpdir(), `vmmkit-mig-${process.pid}-${Date.now()}.sock`)}`],
])('over %s', (_, address) => {
  it('migrates the same, byte for byte', async () => {
    const { srcHost, dstHost, source, destination } = await busyPair();
    const listener = await listenMigration(address());
    const incoming = listener.accept({ timeoutMs: 5000 }).then((t) => migrateIncoming(destination, t));
    const result = await migrateOutgoing(source, await connectMigration(listener.name), { maxIterations: 3, downtimeLimitMs: 0 });
    const received = await incoming;
    await listener.close();
    expect(received.pages).toBe(result.pagesSent);
    expect(ramHash(destination.memory)).toBe(ramHash(source.memory));
    for (const bdf of [NIC_A, NIC_B]) expect(dstHost.deviceState(bdf)).toEqual(srcHost.deviceState(bdf));
    await source.close();
    await destination.close();
  });
});
