// Cancel a live migration at a few hundred seeded random points (an event of either side, then
// a few turns of the event loop), on one source that keeps running through them: every cancel
// leaves it running with the host's census at its baseline and the destination not started,
// and a migration that finished first leaves an identical guest (issue 11).

import { expect, it } from 'vitest';
import { Vmm } from '@vmmkit/core';
import type { VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { SimHost } from '@vmmkit/sim';
import { NIC_A, SimGuest, ramHash, simMachine } from '@vmmkit/sim/testing';
import { MigrationCancelledError, MigrationFailedError, migrate } from '../src/index.js';
import { addNic, allPlugins } from './machines.js';

const SEED = 0x5eed_0011;
const RUNS = 240;

/** mulberry32: a small seeded generator, so that a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

async function vm(host: SimHost, incoming = false): Promise<Vmm> {
  const vmm = await Vmm.create({ host, plugins: allPlugins(), memory: [{ gpa: 0n, size: 4n << 20n }], incoming });
  vmm.addObject('iommufd,id=iommufd0');
  await addNic(vmm, NIC_A, 'iommufd');
  return vmm;
}

async function newSource() {
  const host = new SimHost(simMachine());
  const vmm = await vm(host);
  const nic = vmm.devices[0] as VfioPciDevice;
  const workload = new SimGuest(vmm, host, [{ nic, ring: 0x10_0000n }], { storesPerStep: 8, msPerStep: 1 });
  await workload.setUpNics();
  vmm.events.on('migration:iteration', () => void workload.step());
  return { host, vmm, census: host.census() };
}

const EVENTS = ['migration:started', 'migration:iteration', 'migration:dirty-sync', 'migration:progress', 'migration:switchover', 'migration:device-state'] as const;

it(`cancels at ${RUNS} seeded random points (seed 0x${SEED.toString(16)})`, async () => {
  const next = random(SEED);
  let src = await newSource();
  let cancelled = 0;
  let completed = 0;
  for (let run = 0; run < RUNS; run++) {
    const what = `run ${run}`;
    const dstHost = new SimHost(simMachine());
    const dst = await vm(dstHost, true);
    const abort = new AbortController();
    // The k-th event of the migration, then `turns` turns of the event loop.
    let countdown = Math.floor(next() * 24);
    const turns = Math.floor(next() * 3);
    const onEvent = (): void => {
      if (countdown-- !== 0) return;
      let n = turns;
      const tick = (): void => (n-- > 0 ? void setImmediate(tick) : abort.abort());
      tick();
    };
    for (const ev of EVENTS) src.vmm.events.on(ev, onEvent);
    const outcome = await migrate(src.vmm, dst, { signal: abort.signal, maxIterations: 3, downtimeLimitMs: 0 }).then(() => undefined, (e: unknown) => e);
    for (const ev of EVENTS) src.vmm.events.off(ev, onEvent);
    if (outcome === undefined) {
      completed++;
      expect(ramHash(dst.memory), what).toBe(ramHash(src.vmm.memory));
      expect(dst.running, what).toBe(true);
      await Promise.all([src.vmm.close(), dst.close()]);
      expect(src.host.census(), what).toEqual({ fds: 0, objects: {} });
      src = await newSource();
    } else {
      cancelled++;
      expect(outcome, what).toBeInstanceOf(MigrationFailedError);
      expect((outcome as MigrationFailedError).cause, `${what}: ${String(outcome)}`).toBeInstanceOf(MigrationCancelledError);
      expect(src.vmm.running, what).toBe(true);
      expect(src.vmm.migration, what).toBeUndefined();
      expect(src.host.census(), what).toEqual(src.census);
      expect(dst.running, what).toBe(false);
      await dst.close();
    }
    expect(dstHost.census(), what).toEqual({ fds: 0, objects: {} });
  }
  await src.vmm.close();
  expect(cancelled, 'most runs are cancelled somewhere').toBeGreaterThan(RUNS / 2);
  expect(completed, 'some finish before their cancel point').toBeGreaterThan(0);
}, 180_000);
