// The test that matters: a VM whose RAM is written by vCPU-like writers and by a nic DMA-writing
// at a steady rate is migrated; at switchover the destination's RAM and device state equal the
// source's byte for byte, for every dirty-tracking strategy — and a broken tracker is caught.

import { describe, expect, it } from 'vitest';
import { isGuestIommuDevice, type DirtyTrackingStrategy, type Vmm, type VfioContainerBase } from '@vmmkit/core';
import type { VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { SimHost } from '@vmmkit/sim';
import {
  NIC_A, NIC_B, SIM_GUEST_RING, SimGuest, nicRingBytes, nicRingsAt, ramHash, simMachine, type SimMachineOptions,
} from '@vmmkit/sim/testing';
import { migrate, type MigrationOptions, type MigrationResult } from '../src/index.js';
import { addNic, vmOn, type Backend } from './machines.js';

interface Scenario {
  readonly name: string;
  readonly machine: SimMachineOptions;
  readonly nics: readonly (readonly [bdf: string, backend: Backend, extra?: string])[];
  readonly strategies: readonly DirtyTrackingStrategy[];
  readonly viommu?: boolean;
}

const SCENARIOS: Scenario[] = [
  { name: 'device DMA logging', machine: {}, nics: [[NIC_A, 'iommufd']], strategies: ['device'] },
  { name: 'iommufd HWPT dirty tracking', machine: { dmaLogging: false }, nics: [[NIC_A, 'iommufd']], strategies: ['iommu'] },
  { name: 'type1 dirty tracking', machine: { dmaLogging: false }, nics: [[NIC_A, 'legacy']], strategies: ['iommu'] },
  {
    name: 'the all-dirty fallback (enable-migration=on)', machine: { dmaLogging: false, iommuDirtyTracking: false },
    nics: [[NIC_A, 'iommufd', ',enable-migration=on']], strategies: ['all-dirty'],
  },
  {
    name: 'x-device-dirty-page-tracking=off forcing the IOMMU path', machine: {},
    nics: [[NIC_A, 'iommufd', ',x-device-dirty-page-tracking=off']], strategies: ['iommu'],
  },
  { name: 'two nics on two backends', machine: {}, nics: [[NIC_A, 'iommufd'], [NIC_B, 'legacy', ',x-device-dirty-page-tracking=off']], strategies: ['device', 'iommu'] },
  { name: 'a guest IOMMU remapping during precopy (device logging)', machine: {}, nics: [[NIC_A, 'iommufd']], strategies: ['device'], viommu: true },
  { name: 'a guest IOMMU remapping during precopy (type1)', machine: { dmaLogging: false }, nics: [[NIC_A, 'legacy']], strategies: ['iommu'], viommu: true },
];

const RING_IOVA = 0x10_0000_0000n;
const RING_GPAS = [0x10_0000n, (1n << 32n) + 0x20_0000n] as const;
const RING_BYTES = nicRingBytes(SIM_GUEST_RING);

/** A source and a destination VM of the scenario, the source's guest at work. */
async function setUp(s: Scenario) {
  const srcHost = new SimHost(simMachine(s.machine));
  const dstHost = new SimHost(simMachine(s.machine));
  const baseline = dstHost.census();
  const source = await vmOn(srcHost);
  const destination = await vmOn(dstHost, { incoming: true });
  for (const vm of [source, destination]) {
    if (s.viommu) await vm.addDevice('guest-iommu,id=viommu0,aw-bits=39');
    for (const [bdf, backend, extra] of s.nics) await addNic(vm, bdf, backend, extra);
  }
  const nics = s.nics.map(([bdf]) => source.devices.find((d) => d.name === bdf) as VfioPciDevice);
  const rings = nicRingsAt(s.viommu ? RING_IOVA : RING_GPAS[0], nics);
  const viommu = source.devices.find(isGuestIommuDevice);
  if (viommu) await viommu.iommu.map(RING_IOVA, RING_BYTES, RING_GPAS[0]);
  const workload = new SimGuest(source, srcHost, rings, viommu ? { remap: { iommu: viommu.iommu, iova: RING_IOVA, gpas: RING_GPAS } } : {});
  await workload.setUpNics();
  for (let i = 0; i < 5; i++) await workload.step();
  return { srcHost, dstHost, source, destination, workload, baseline };
}

/**
 * Migrate with the guest running throughout precopy, and the nics still receiving between the
 * vCPUs pausing and the devices stopping (what only the last sync can catch).
 */
async function migrateBusy(source: Vmm, destination: Vmm, workload: SimGuest, srcHost: SimHost, more: MigrationOptions = {}): Promise<MigrationResult> {
  const remaps: Promise<void>[] = [];
  source.events.on('migration:iteration', () => {
    remaps.push(workload.step().then(() => workload.remap()));
  });
  source.events.on('migration:switchover', () => srcHost.advance(5));
  const stop = workload.runConcurrently();
  try {
    return await migrate(source, destination, { downtimeLimitMs: 0, maxIterations: 4, maxBandwidth: 400 << 20, ...more });
  } finally {
    await stop();
    await Promise.all(remaps);
  }
}

/** The main stream alone, and RAM over three channels beside it (with the channels' checksums). */
const LINKS: [string, MigrationOptions][] = [['the main stream', {}], ['3 RAM channels', { channels: 3, integrity: true }]];

describe.each(SCENARIOS)('nothing is lost: $name', (s) => {
  it.for(LINKS)('the destination equals the source at switchover, RAM and devices, byte for byte (%s)', { timeout: 30_000 }, async ([, links]) => {
    const { srcHost, dstHost, source, destination, workload, baseline } = await setUp(s);
    const result = await migrateBusy(source, destination, workload, srcHost, links);
    expect(result.containers.map((c) => c.strategy).sort()).toEqual([...s.strategies].sort());
    expect(result.iterations).toBe(4);
    expect(source.running).toBe(false);
    expect(destination.running).toBe(true);
    expect(ramHash(destination.memory)).toBe(ramHash(source.memory));
    for (const [bdf] of s.nics) expect(dstHost.deviceState(bdf), `${bdf} state`).toEqual(srcHost.deviceState(bdf));
    expect(workload.writes).toBeGreaterThan(4 * 64);
    await source.close();
    await destination.close();
    expect(dstHost.census()).toEqual(baseline);
  });
});

describe('a broken tracker is caught', () => {
  it('device DMA logging that reports nothing leaves the destination different', async () => {
    const { srcHost, source, destination, workload } = await setUp(SCENARIOS[0]!);
    const container = (source.devices[0] as unknown as { vfio: { container: VfioContainerBase } }).vfio.container;
    container.dirtyTracking.sync = async () => 0; // the tracker "forgets" every device write
    await migrateBusy(source, destination, workload, srcHost);
    expect(ramHash(destination.memory)).not.toBe(ramHash(source.memory));
    await source.close();
    await destination.close();
  });
});
