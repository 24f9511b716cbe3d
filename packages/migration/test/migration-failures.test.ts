// Cancel and failure at any point leave the source running as before: devices back in RUNNING,
// dirty tracking stopped, every fd closed — and the destination never starts. A second attempt
// then migrates everything.

import { describe, expect, it } from 'vitest';
import { ConfigError, Vmm } from '@vmmkit/core';
import { VFIO_DEVICE_FEATURE } from '@vmmkit/core/uapi';
import { SimHost } from '@vmmkit/sim';
import { EDU, NIC_A, SimGuest, ramHash, simMachine } from '@vmmkit/sim/testing';
import {
  MigrationBlockedError, MigrationFailedError, MigrationStreamError, PREAMBLE_SIZE, RECORD_HEADER_SIZE, describeSetup, migrate, migrateIncoming,
  migrateOutgoing, transportPair, type MigrationTransport,
} from '../src/index.js';
import { addNic, allPlugins, vmOn } from './machines.js';
import { relay } from './stream-replay.js';

/** A source with a busy nic on iommufd (device logging), and a matching incoming destination. */
async function pair(options: { destinationMemory?: 'different' } = {}) {
  const srcHost = new SimHost(simMachine());
  const dstHost = new SimHost(simMachine());
  const source = await vmOn(srcHost);
  const destination = options.destinationMemory
    ? await Vmm.create({ host: dstHost, plugins: allPlugins(), memory: [{ gpa: 0n, size: 8n << 20n }], incoming: true })
    : await vmOn(dstHost, { incoming: true });
  if (options.destinationMemory) destination.addObject('iommufd,id=iommufd0');
  const nic = await addNic(source, NIC_A, 'iommufd');
  await addNic(destination, NIC_A, 'iommufd');
  const workload = new SimGuest(source, srcHost, [{ nic, ring: 0x10_0000n }]);
  await workload.setUpNics();
  await workload.step();
  const states: string[] = [];
  source.events.on('migration:device-state', (e) => states.push(e.to));
  return { srcHost, dstHost, source, destination, workload, states, srcCensus: srcHost.census(), dstCensus: dstHost.census() };
}

type Pair = Awaited<ReturnType<typeof pair>>;

/** The source runs on as it was; the destination did not start and holds nothing extra. */
function expectRolledBack(p: Pair): void {
  expect(p.source.running).toBe(true);
  expect(p.states.at(-1) ?? 'RUNNING').toBe('RUNNING');
  expect(p.source.memory.logging).toBe(false);
  expect(p.srcHost.census()).toEqual(p.srcCensus);
  expect(p.destination.running).toBe(false);
  expect(p.dstHost.census()).toEqual(p.dstCensus);
}

/** After a failure, the same VMs migrate completely. */
async function expectRetryMigrates(p: Pair): Promise<void> {
  const fresh = await vmOn(p.dstHost, { incoming: true });
  await p.destination.close();
  await addNic(fresh, NIC_A, 'iommufd');
  await p.workload.step();
  await migrate(p.source, fresh, { maxIterations: 2, downtimeLimitMs: 0 });
  expect(ramHash(fresh.memory)).toBe(ramHash(p.source.memory));
  expect(p.dstHost.deviceState(NIC_A)).toEqual(p.srcHost.deviceState(NIC_A));
  await fresh.close();
  await p.source.close();
}

const failure = (promise: Promise<unknown>): Promise<unknown> => promise.then(() => undefined, (e: unknown) => e);

describe('blockers', () => {
  it('refuse the migration before anything changes, listing every blocker; the destination is told', async () => {
    const p = await pair();
    await p.source.addDevice(`vfio-pci,host=${EDU}`);
    const [out, into] = transportPair();
    const [sent, received] = await Promise.all([failure(migrateOutgoing(p.source, out)), failure(migrateIncoming(p.destination, into))]);
    expect(sent).toBeInstanceOf(MigrationBlockedError);
    expect((sent as MigrationBlockedError).blockers.map((b) => b.reason)).toEqual([`${EDU}: VFIO migration is not supported in kernel`]);
    expect(String((received as MigrationFailedError).cause)).toContain('the source gave up: the VM cannot migrate');
    expect(p.states).toEqual([]);
    await p.source.close();
    await p.destination.close();
  });
});

describe('failures on the source side', () => {
  it('cancel during precopy', async () => {
    const p = await pair();
    const abort = new AbortController();
    p.source.events.on('migration:iteration', (e) => e.iteration === 3 && abort.abort());
    const error = await failure(migrate(p.source, p.destination, { maxIterations: 10, downtimeLimitMs: 0, signal: abort.signal }));
    expect(error).toBeInstanceOf(MigrationFailedError);
    expect((error as MigrationFailedError).phase).toBe('precopy');
    expect(String(error)).toContain('the migration was cancelled');
    expect(p.states).toEqual(['PRE_COPY', 'RUNNING']);
    expectRolledBack(p);
    await expectRetryMigrates(p);
  });

  it('a device that fails to stop at switchover', async () => {
    const p = await pair();
    // The nth VFIO_DEVICE_FEATURE after the last precopy iteration starts is the STOP_COPY change.
    p.source.events.once('migration:switchover', () => p.srcHost.injectFault({ ioctl: VFIO_DEVICE_FEATURE, errno: 'EIO', nth: 2 }));
    const error = await failure(migrate(p.source, p.destination, { maxIterations: 2, downtimeLimitMs: 0 }));
    expect(error).toBeInstanceOf(MigrationFailedError);
    expect((error as MigrationFailedError).phase).toBe('stop-copy');
    expect(String(error)).toContain('STOP_COPY');
    expectRolledBack(p);
    await expectRetryMigrates(p);
  });

  it('the connection lost in the middle of precopy', async () => {
    const p = await pair();
    const [out, into] = transportPair();
    p.source.events.on('migration:iteration', (e) => e.iteration === 2 && into.destroy(new Error('cable pulled')));
    const [sent, received] = await Promise.all([
      failure(migrateOutgoing(p.source, out, { maxIterations: 10, downtimeLimitMs: 0 })),
      failure(migrateIncoming(p.destination, into)),
    ]);
    expect(sent).toBeInstanceOf(MigrationFailedError);
    expect(received).toBeInstanceOf(MigrationFailedError);
    expectRolledBack(p);
    await expectRetryMigrates(p);
  });
});

describe('the destination refusing', () => {
  it('giving up while the source writes: the source reports the destination\'s reason, not the connection it then lost', async () => {
    const p = await pair();
    const [out, into] = transportPair();
    // The source's return path reads late, so its next write fails on the connection the
    // destination closed before it has read the ERROR sent first (as over a socket, racing).
    const lagging: MigrationTransport = {
      name: out.name, write: (c) => out.write(c), end: () => out.end(), destroy: (e) => out.destroy(e),
      read: async () => {
        const chunk = await out.read();
        await new Promise((resolve) => setTimeout(resolve, 20));
        return chunk;
      },
    };
    const stop = new AbortController();
    p.source.events.on('migration:iteration', (e) => e.iteration === 2 && stop.abort());
    const [sent, received] = await Promise.all([
      failure(migrateOutgoing(p.source, lagging, { maxIterations: 10, downtimeLimitMs: 0 })),
      failure(migrateIncoming(p.destination, into, { signal: stop.signal })),
    ]);
    expect(received).toBeInstanceOf(MigrationFailedError);
    expect(sent).toBeInstanceOf(MigrationFailedError);
    expect(String((sent as MigrationFailedError).cause)).toContain(`the destination refused the migration: ${(received as MigrationFailedError).message}`);
    expectRolledBack(p);
    await expectRetryMigrates(p);
  });

  it('a VM whose RAM differs, named in the refusal', async () => {
    const p = await pair({ destinationMemory: 'different' });
    const error = await failure(migrate(p.source, p.destination));
    expect(error).toBeInstanceOf(MigrationFailedError);
    expect(String((error as MigrationFailedError).cause)).toContain("the source has 2 RAM blocks, this VM 1");
    expectRolledBack(p);
    await p.destination.close();
    await p.source.close();
  });

  it('a device state that does not load: the destination resets it, the source runs on', async () => {
    const p = await pair();
    p.destination.events.on('migration:device-state', (e) => {
      // Loading happens on leaving RESUMING: make that change fail.
      if (e.to === 'RESUMING') p.dstHost.injectFault({ ioctl: VFIO_DEVICE_FEATURE, errno: 'EINVAL', nth: 1 });
    });
    const error = await failure(migrate(p.source, p.destination, { maxIterations: 1, downtimeLimitMs: 0 }));
    expect(error).toBeInstanceOf(MigrationFailedError);
    expect((error as MigrationFailedError).phase).toBe('handover');
    expect(String((error as MigrationFailedError).cause)).toContain('the device state did not load');
    expectRolledBack(p);
    await expectRetryMigrates(p);
  });

  it('a corrupted record in the stream: refused with the record named, the source runs on', async () => {
    const p = await pair();
    const [out, wire] = transportPair();
    const [tap, into] = transportPair();
    // The first record after SETUP is a RAM record: point its block index at a block that does not exist.
    const setup = new TextEncoder().encode(JSON.stringify(describeSetup(p.source))).byteLength;
    const blockField = PREAMBLE_SIZE + RECORD_HEADER_SIZE + setup + RECORD_HEADER_SIZE;
    let corrupted = false;
    relay(wire, tap, (chunk, offset) => {
      if (blockField >= offset && blockField < offset + chunk.byteLength) {
        chunk[blockField - offset] = 9;
        corrupted = true;
      }
    });
    const [sent, received] = await Promise.all([failure(migrateOutgoing(p.source, out)), failure(migrateIncoming(p.destination, into))]);
    expect(corrupted).toBe(true);
    expect((received as MigrationFailedError).cause).toBeInstanceOf(MigrationStreamError);
    expect(String((received as MigrationFailedError).cause)).toMatch(/RAM_(PAGES|ZERO) record at offset \d+: RAM block 9 does not exist/);
    expect(String(sent)).toContain('RAM block 9 does not exist');
    expectRolledBack(p);
    await p.source.close();
    await p.destination.close();
  });
});

it('a running VM cannot be a destination, and a VMM without the plugin cannot migrate', async () => {
  const host = new SimHost(simMachine());
  const running = await vmOn(host);
  await expect(migrateIncoming(running, transportPair()[1])).rejects.toThrow(ConfigError);
  await expect(migrateIncoming(running, transportPair()[1])).rejects.toThrow('must be created with incoming: true');
  const bare = await Vmm.create({ host, plugins: [], memory: [{ gpa: 0n, size: 1n << 20n }] });
  await expect(migrateOutgoing(bare, transportPair()[0])).rejects.toThrow('composed without migrationPlugin()');
  await bare.close();
  await running.close();
});
