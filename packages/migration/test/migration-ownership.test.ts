// The VM owns its migration and each container owns its dirty tracking: a failed stop leaves
// nothing on, one migration at a time, no hotplug or unplug while migrating, and close() cancels
// a running migration cleanly (issue 11, defects 1-3).

import { describe, expect, it } from 'vitest';
import { MigrationInProgressError, type Vmm } from '@vmmkit/core';
import { IOMMU_HWPT_SET_DIRTY_TRACKING, VFIO_DEVICE_FEATURE, VFIO_IOMMU_DIRTY_PAGES } from '@vmmkit/core/uapi';
import { SimHost } from '@vmmkit/sim';
import { EDU, NIC_A, NIC_B, SimGuest, ramHash, simMachine, type SimMachineOptions } from '@vmmkit/sim/testing';
import {
  MigrationCancelledError, MigrationFailedError, migrate, migrateIncoming, migrateOutgoing, transportPair,
} from '../src/index.js';
import { addNic, vmOn, type Backend } from './machines.js';

/** A dirty-tracking strategy, the machine and backend that give it, and the ioctl that stops it. */
const STRATEGIES = [
  { strategy: 'device', machine: {}, backend: 'iommufd', stop: { ioctl: VFIO_DEVICE_FEATURE, on: 'vfio-device' } },
  { strategy: 'iommu', machine: { dmaLogging: false }, backend: 'iommufd', stop: { ioctl: IOMMU_HWPT_SET_DIRTY_TRACKING, on: 'iommufd' } },
  { strategy: 'iommu', machine: { dmaLogging: false }, backend: 'legacy', stop: { ioctl: VFIO_IOMMU_DIRTY_PAGES, on: 'vfio-container' } },
] as const satisfies readonly { strategy: string; machine: SimMachineOptions; backend: Backend; stop: object }[];

async function pair(o: SimMachineOptions, backend: Backend) {
  const srcHost = new SimHost(simMachine(o));
  const dstHost = new SimHost(simMachine(o));
  const source = await vmOn(srcHost);
  const nic = await addNic(source, NIC_A, backend);
  const workload = new SimGuest(source, srcHost, [{ nic, ring: 0x10_0000n }]);
  await workload.setUpNics();
  await workload.step();
  return { srcHost, dstHost, source, workload, srcCensus: srcHost.census() };
}

async function destinationOn(host: SimHost, backend: Backend): Promise<Vmm> {
  const vmm = await vmOn(host, { incoming: true });
  await addNic(vmm, NIC_A, backend);
  return vmm;
}

const failure = (promise: Promise<unknown>): Promise<unknown> => promise.then(() => undefined, (e: unknown) => e);

describe('a stop that fails at the end of stop-copy leaves nothing on', () => {
  it.each(STRATEGIES)('$strategy tracking on $backend: the migration fails, tracking is off, the next migration works', async ({ machine: o, backend, stop }) => {
    const p = await pair(o, backend);
    const first = await destinationOn(p.dstHost, backend);
    // The stop-copy pass is sent: the next call of the stop ioctl is the tracking's stop.
    p.source.events.on('migration:progress', (e) => {
      if (e.phase === 'stop-copy') p.srcHost.injectFault({ ioctl: stop.ioctl, on: stop.on, errno: 'EIO' });
    });
    const e = await failure(migrate(p.source, first, { maxIterations: 2 }));
    expect(e).toBeInstanceOf(MigrationFailedError);
    expect(String(e)).toMatch(/failed to stop .*(dirty|DMA logging).*EIO/);
    p.source.events.removeAllListeners('migration:progress');
    expect(p.source.running).toBe(true);
    expect(p.srcHost.census(), 'nothing stays on in the kernel').toEqual(p.srcCensus);
    await first.close();

    const second = await destinationOn(p.dstHost, backend);
    await p.workload.step();
    await migrate(p.source, second, { maxIterations: 2 });
    expect(ramHash(second.memory)).toBe(ramHash(p.source.memory));
    await second.close();
    await p.source.close();
  });
});

describe('one migration at a time', () => {
  it('refuses a second migration of the VM before it changes anything, and the first completes', async () => {
    const p = await pair({}, 'iommufd');
    const dst1 = await destinationOn(p.dstHost, 'iommufd');
    const dst2Host = new SimHost(simMachine());
    const dst2 = await destinationOn(dst2Host, 'iommufd');
    const dst2Census = dst2Host.census();
    let second: Promise<unknown> | undefined;
    p.source.events.on('migration:iteration', (e) => {
      if (e.iteration !== 2 || second) return;
      const [out, into] = transportPair();
      second = Promise.all([failure(migrateOutgoing(p.source, out)), failure(migrateIncoming(dst2, into))]);
    });
    const result = await migrate(p.source, dst1, { maxIterations: 3 });
    const [sent, received] = (await second) as unknown[];
    expect(sent).toBeInstanceOf(MigrationInProgressError);
    expect(String(sent)).toContain('while it migrates out');
    expect(received, 'the refused migration\'s destination hears the connection end').toBeInstanceOf(MigrationFailedError);
    expect(result.iterations).toBeGreaterThan(0);
    expect(ramHash(dst1.memory)).toBe(ramHash(p.source.memory));
    expect(dst2Host.census()).toEqual(dst2Census);
    await Promise.all([dst1.close(), dst2.close(), p.source.close()]);
  });

  it('refuses a second incoming migration into a VM that is receiving one', async () => {
    const dstHost = new SimHost(simMachine());
    const dst = await destinationOn(dstHost, 'iommufd');
    const [, into] = transportPair();
    const receiving = failure(migrateIncoming(dst, into));
    const [, into2] = transportPair();
    const e = await failure(migrateIncoming(dst, into2));
    expect(e).toBeInstanceOf(MigrationInProgressError);
    await dst.close();
    expect(await receiving).toBeInstanceOf(MigrationFailedError);
  });
});

describe('hotplug and unplug while migrating', () => {
  it('are refused with a typed error, change nothing, and the migration completes with every device', async () => {
    const p = await pair({ iommuDirtyTracking: false }, 'iommufd');
    await addNic(p.source, NIC_B, 'legacy');
    const dst = await destinationOn(p.dstHost, 'iommufd');
    await addNic(dst, NIC_B, 'legacy');
    const refusals: unknown[] = [];
    let census: unknown;
    p.source.events.on('migration:iteration', (e) => {
      if (e.iteration !== 2) return;
      census = p.srcHost.census();
      refusals.push(p.source.addDevice(`vfio-pci,host=${EDU}`).then(() => 'added', (err: unknown) => err));
      refusals.push(p.source.removeDevice(p.source.devices[0]!.id).then(() => 'removed', (err: unknown) => err));
    });
    await migrate(p.source, dst, { maxIterations: 3 });
    const [added, removed] = await Promise.all(refusals);
    expect(added).toBeInstanceOf(MigrationInProgressError);
    expect(String(added)).toContain('cannot add a device (-device vfio-pci)');
    expect(removed).toBeInstanceOf(MigrationInProgressError);
    expect(String(removed)).toMatch(/cannot remove device 'vfio-pci.0'/);
    expect(census).toBeDefined();
    expect(p.source.devices).toHaveLength(2);
    expect(dst.devices.map((d) => d.name)).toEqual([NIC_A, NIC_B]);
    expect(p.dstHost.deviceState(NIC_B)).toEqual(p.srcHost.deviceState(NIC_B));
    // After the migration, hotplug works again.
    await p.source.addDevice(`vfio-pci,host=${EDU}`);
    await Promise.all([dst.close(), p.source.close()]);
    expect(p.srcHost.census()).toEqual({ fds: 0, objects: {} });
  });
});

describe('close() during a migration', () => {
  it('cancels an outgoing migration, rolls it back and releases everything', async () => {
    const p = await pair({}, 'iommufd');
    const dst = await destinationOn(p.dstHost, 'iommufd');
    const dstCensus = p.dstHost.census();
    let closing: Promise<void> | undefined;
    p.source.events.on('migration:iteration', (e) => {
      if (e.iteration === 2) closing ??= p.source.close();
    });
    const [sent, received] = await Promise.all([failure(migrate(p.source, dst, { maxIterations: 5 })), Promise.resolve()]);
    await closing;
    expect(sent).toBeInstanceOf(MigrationFailedError);
    expect((sent as MigrationFailedError).cause).toBeInstanceOf(MigrationCancelledError);
    expect(String(sent)).toContain('is closing');
    expect(received).toBeUndefined();
    expect(p.srcHost.census()).toEqual({ fds: 0, objects: {} });
    expect(dst.running).toBe(false);
    expect(p.dstHost.census()).toEqual(dstCensus);
    await dst.close();
    expect(p.dstHost.census()).toEqual({ fds: 0, objects: {} });
  });

  it('cancels an incoming migration: the devices leave RESUMING and everything is released', async () => {
    const p = await pair({}, 'iommufd');
    const dst = await destinationOn(p.dstHost, 'iommufd');
    let closing: Promise<void> | undefined;
    p.source.events.on('migration:iteration', (e) => {
      if (e.iteration === 2) closing ??= dst.close();
    });
    const e = await failure(migrate(p.source, dst, { maxIterations: 5 }));
    await closing;
    expect(e).toBeInstanceOf(MigrationFailedError);
    expect(p.dstHost.census()).toEqual({ fds: 0, objects: {} });
    expect(p.source.running).toBe(true);
    expect(p.srcHost.census()).toEqual(p.srcCensus);
    await p.source.close();
  });
});

describe('the handover after GO', () => {
  it('a destination that fails to start its devices says so, and the source runs the guest again', async () => {
    const p = await pair({}, 'iommufd');
    const dst = await destinationOn(p.dstHost, 'iommufd');
    const dstCensus = p.dstHost.census();
    // The destination's last device call is the RUNNING arc after GO.
    p.source.events.on('migration:switchover', () => p.dstHost.injectFault({ ioctl: VFIO_DEVICE_FEATURE, on: 'vfio-device', errno: 'EIO', nth: 2 }));
    const [out, into] = transportPair();
    const [sent, received] = await Promise.all([failure(migrateOutgoing(p.source, out)), failure(migrateIncoming(dst, into))]);
    expect(received).toBeInstanceOf(MigrationFailedError);
    expect((received as MigrationFailedError).phase).toBe('handover');
    expect(sent).toBeInstanceOf(MigrationFailedError);
    expect(String(sent)).toContain('the destination refused the migration');
    expect(p.source.running).toBe(true);
    expect(p.srcHost.census()).toEqual(p.srcCensus);
    expect(dst.running).toBe(false);
    expect(p.dstHost.census()).toEqual(dstCensus);
    await Promise.all([dst.close(), p.source.close()]);
  });

  it('a connection lost after GO leaves the source paused: the guest may be running on the destination', async () => {
    const p = await pair({}, 'iommufd');
    const dst = await destinationOn(p.dstHost, 'iommufd');
    const [out, into] = transportPair();
    // The destination starts the guest, and its STARTED never reaches the source.
    dst.events.on('vm:run-state', (e) => e.running && into.destroy());
    const [sent, received] = await Promise.all([failure(migrateOutgoing(p.source, out)), failure(migrateIncoming(dst, into))]);
    expect(received).toBeUndefined();
    expect(dst.running).toBe(true);
    expect(sent).toBeInstanceOf(MigrationFailedError);
    expect(String(sent)).toContain('the destination may be running the guest: the source stays paused');
    expect(p.source.running).toBe(false);
    expect(ramHash(dst.memory)).toBe(ramHash(p.source.memory));
    await Promise.all([dst.close(), p.source.close()]);
    expect(p.srcHost.census()).toEqual({ fds: 0, objects: {} });
  });
});
