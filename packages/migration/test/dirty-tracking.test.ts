// The dirty-tracking strategy per container, as QEMU picks it, and each tracker finding the
// pages a device DMA-wrote: device DMA logging, iommufd HWPT tracking, type1 tracking, the
// all-dirty fallback, and a guest IOMMU in between.

import { describe, expect, it } from 'vitest';
import {
  VfioError, collapseDmaLoggingRanges, dmaLoggingRanges, isGuestIommuDevice, type VfioContainerBase, type Vmm,
} from '@vmmkit/core';
import { VFIO_DEVICE_FEATURE } from '@vmmkit/core/uapi';
import { SimHost } from '@vmmkit/sim';
import { NIC_A, NIC_B, simMachine, type SimMachineOptions } from '@vmmkit/sim/testing';
import {
  VmDirtyTracking, planMigration,
} from '../src/index.js';
import { addNic, vmOn, type Backend } from './machines.js';

const PAGE = 4096n;
const G = 1n << 32n;

async function vmWith(o: SimMachineOptions, nics: [string, Backend, string?][]) {
  const host = new SimHost(simMachine(o));
  const baseline = host.census();
  const vmm = await vmOn(host);
  for (const [bdf, backend, extra] of nics) await addNic(vmm, bdf, backend, extra);
  return { host, vmm, baseline };
}

/** Pages dirty in the log, as guest physical page numbers. */
function dirtyGpas(vmm: Vmm): bigint[] {
  const out: bigint[] = [];
  for (const b of vmm.memory.blocks) b.dirty?.forEachSetBit((bit) => out.push(b.gpa / PAGE + BigInt(bit)));
  return out;
}

/** Start tracking, clear the initial all-dirty log, let the device write, and sync. */
async function dmaAndSync(host: SimHost, vmm: Vmm, writes: [string, bigint][]) {
  const tracking = new VmDirtyTracking(vmm);
  await tracking.start();
  vmm.memory.blocks.forEach((_, i) => tracking.take(i));
  for (const [bdf, iova] of writes) host.deviceDma(bdf, iova, new Uint8Array(16).fill(7));
  const report = await tracking.sync(true);
  return { tracking, report };
}

describe('strategy per container', () => {
  it.each([
    ['device DMA logging when every device logs', { dmaLogging: true }, 'iommufd', '', 'device'],
    ['iommufd HWPT tracking with x-device-dirty-page-tracking=off', { dmaLogging: true }, 'iommufd', ',x-device-dirty-page-tracking=off', 'iommu'],
    ['iommufd HWPT tracking when the device cannot log', { dmaLogging: false }, 'iommufd', '', 'iommu'],
    ['type1 tracking when the device cannot log', { dmaLogging: false }, 'legacy', '', 'iommu'],
    ['all-dirty with enable-migration=on and no tracker at all', { dmaLogging: false, iommuDirtyTracking: false }, 'iommufd', ',enable-migration=on', 'all-dirty'],
  ] as const)('%s', async (_, o, backend, extra, strategy) => {
    const { vmm } = await vmWith(o, [[NIC_A, backend, extra]]);
    const plan = planMigration(vmm);
    expect(plan.blockers).toEqual([]);
    expect(plan.containers).toHaveLength(1);
    expect(plan.containers[0]!.strategy).toBe(strategy);
    expect(plan.containers[0]!.devices).toEqual([NIC_A]);
    await vmm.close();
  });

  it('is per container: one VM can use device logging and IOMMU tracking at once', async () => {
    const { vmm } = await vmWith({}, [[NIC_A, 'iommufd'], [NIC_B, 'legacy', ',x-device-dirty-page-tracking=off']]);
    const strategies = Object.fromEntries(planMigration(vmm).containers.map((c) => [c.backend, c.strategy]));
    expect(strategies).toEqual({ 'vfio-iommu-iommufd': 'device', 'vfio-iommu-legacy': 'iommu' });
    await vmm.close();
  });
});

describe('blockers, in QEMU words', () => {
  it('names every device that cannot migrate, and why', async () => {
    const host = new SimHost(simMachine({ dmaLogging: false, iommuDirtyTracking: false }));
    const vmm = await vmOn(host);
    const blockers: string[][] = [];
    vmm.events.on('migration:blockers-changed', (e) => blockers.push(e.blockers.map((b) => b.reason)));
    await addNic(vmm, NIC_A, 'iommufd');
    await addNic(vmm, NIC_B, 'iommufd', ',enable-migration=off');
    await vmm.addDevice('vfio-pci,host=0000:00:03.0');
    const plan = planMigration(vmm);
    expect(plan.blockers.map((b) => b.reason)).toEqual([
      `${NIC_A}: VFIO device doesn't support device and IOMMU dirty tracking`,
      `${NIC_B}: Migration is disabled for VFIO device`,
      '0000:00:03.0: VFIO migration is not supported in kernel',
    ]);
    expect(blockers.at(-1)).toEqual(plan.blockers.map((b) => b.reason));
    await vmm.removeDevice(vmm.devices[0]!.id);
    expect(blockers.at(-1)).toHaveLength(2);
    await vmm.close();
  });

  it('blocks several devices when one lacks P2P, and a vIOMMU without an address width', async () => {
    const host = new SimHost(simMachine({ migrationFlags: ['STOP_COPY'] }));
    const vmm = await vmOn(host);
    await vmm.addDevice('guest-iommu');
    await addNic(vmm, NIC_A, 'iommufd');
    await addNic(vmm, NIC_B, 'legacy');
    expect(planMigration(vmm).blockers.map((b) => b.reason)).toEqual([
      'Migration with vIOMMU is currently not supported without vIOMMU address space boundaries',
      'Multiple VFIO devices migration is supported only if all of them support P2P migration',
    ]);
    await vmm.close();
  });
});

describe('DMA logging ranges, collapsed as QEMU does', () => {
  it('keeps 32-bit DMA, 64-bit DMA and the PCI 64-bit hole apart', () => {
    expect(collapseDmaLoggingRanges([
      { iova: 0x1000n, last: 0x9fffn }, { iova: 0x10_0000n, last: 0x7fff_ffffn },
      { iova: G, last: G + 0xfff_ffffn }, { iova: 3n * G, last: 3n * G + 0xfffn },
      { iova: 0x80_0000_0000n, last: 0x80_0000_ffffn, pciBar: true },
    ])).toEqual([
      { iova: 0x1000n, length: 0x7fff_f000n },
      { iova: G, length: 2n * G + 0x1000n },
      { iova: 0x80_0000_0000n, length: 0x1_0000n },
    ]);
    expect(collapseDmaLoggingRanges([])).toEqual([]);
  });

  it('covers guest RAM on system memory, and the whole IOVA space behind a guest IOMMU', async () => {
    const { vmm } = await vmWith({}, [[NIC_A, 'iommufd']]);
    const container = vmm.devices.map((d) => (d as { vfio?: { container?: VfioContainerBase } }).vfio?.container)[0]!;
    expect(dmaLoggingRanges(container.space.as.sections, 4096)).toEqual([{ iova: 0n, length: 32n << 20n }, { iova: G, length: 16n << 20n }]);
    await vmm.close();

    const host = new SimHost(simMachine());
    const v = await vmOn(host);
    await v.addDevice('guest-iommu,aw-bits=39');
    const nic = await addNic(v, NIC_A, 'iommufd');
    expect(dmaLoggingRanges(nic.vfio.container!.space.as.sections, 4096)).toEqual([{ iova: 0n, length: G }, { iova: G, length: (1n << 39n) - G }]);
    await v.close();
  });
});

describe('trackers find what devices wrote', () => {
  it.each([
    ['device logging', {}, 'iommufd', ''],
    ['iommufd HWPT tracking', {}, 'iommufd', ',x-device-dirty-page-tracking=off'],
  ] as const)('%s: exactly the pages written, counted for the container', async (_, o, backend, extra) => {
    const { host, vmm, baseline } = await vmWith(o, [[NIC_A, backend, extra]]);
    const { tracking, report } = await dmaAndSync(host, vmm, [[NIC_A, 0x5000n], [NIC_A, G + 0x3000n]]);
    expect(dirtyGpas(vmm)).toEqual([5n, G / PAGE + 3n]);
    expect(report.containers.map((c) => c.pages)).toEqual([2]);
    expect(report.pages).toBe(2);
    await tracking.stop();
    expect(vmm.memory.logging).toBe(false);
    await vmm.close();
    expect(host.census()).toEqual(baseline);
  });

  it.each([
    ['type1 tracking reports every mapped page', { dmaLogging: false }, 'legacy', ''],
    ['all-dirty marks every mapped page', { dmaLogging: false, iommuDirtyTracking: false }, 'iommufd', ',enable-migration=on'],
  ] as const)('%s', async (_, o, backend, extra) => {
    const { host, vmm } = await vmWith(o, [[NIC_A, backend, extra]]);
    const { tracking, report } = await dmaAndSync(host, vmm, [[NIC_A, 0x5000n]]);
    expect(report.pages).toBe(Number((48n << 20n) / PAGE));
    await tracking.stop();
    await vmm.close();
  });

  it('translates IOVAs to guest RAM through a guest IOMMU', async () => {
    const host = new SimHost(simMachine());
    const vmm = await vmOn(host);
    const viommu = await vmm.addDevice('guest-iommu,aw-bits=39');
    await addNic(vmm, NIC_A, 'iommufd');
    if (!isGuestIommuDevice(viommu)) throw new Error('not a guest IOMMU');
    await viommu.iommu.map(0x40_0000_0000n, 0x4000n, G + 0x10_0000n);
    const { tracking } = await dmaAndSync(host, vmm, [[NIC_A, 0x40_0000_2000n]]);
    expect(dirtyGpas(vmm)).toEqual([(G + 0x10_2000n) / PAGE]);
    await tracking.stop();
    await vmm.close();
  });

  it('fails to start when the IOVA space to track is beyond what the device can log, naming it', async () => {
    const host = new SimHost(simMachine());
    const vmm = await vmOn(host);
    await vmm.addDevice('guest-iommu,aw-bits=52'); // the nic logs at most 2^48 bytes of IOVA
    await addNic(vmm, NIC_A, 'iommufd');
    const failure = await new VmDirtyTracking(vmm).start().catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(VfioError);
    expect(String(failure)).toContain(`${NIC_A}: failed to start dirty page tracking (device)`);
    expect(String(failure)).toContain(`failed to start device DMA logging`);
    expect(String(failure)).toContain('EOPNOTSUPP');
    expect(vmm.memory.logging).toBe(false);
    await vmm.close();
  });

  it('starts device logging on every device or on none', async () => {
    const { host, vmm, baseline } = await vmWith({}, [[NIC_A, 'iommufd'], [NIC_B, 'iommufd']]);
    const before = host.census();
    host.injectFault({ ioctl: VFIO_DEVICE_FEATURE, errno: 'ENOSPC', nth: 2 });
    const tracking = new VmDirtyTracking(vmm);
    const failure = await tracking.start().catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(VfioError);
    expect(String(failure)).toContain('failed to start dirty page tracking');
    expect(String(failure)).toContain(NIC_B);
    expect(host.census()).toEqual(before);
    expect(vmm.memory.logging).toBe(false);
    await vmm.close();
    expect(host.census()).toEqual(baseline);
  });
});
