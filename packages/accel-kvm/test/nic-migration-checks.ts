// What the two-process migrations of the nic-ring guest on KVM share (kvm-nic-migration with the
// simulated nic, kvm-vfio-user-nic-migration with the nic over vfio-user): the destination's
// report (fixtures/kvm-nic-destination.mjs), a dirty tracker that forgets a page, the migration
// with KVM's log watched, and the checks that the guest carried on where it stopped.

import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import type { HostKernel, Vmm } from '@vmmkit/core';
import { migrateOutgoing } from '@vmmkit/migration';
import { getRegs, NIC_RING_PARAM, NIC_RING_PARAMS_SIZE, nicRingGuestError, type KvmAccel } from '../src/index.js';
import { connectWhenListening } from './destination-process.js';
import { NIC_GUEST, NIC_GUEST_PARAMS, type NicGuestReports } from './kvm-nic-machine.js';

/** What the destination says: its state as the guest starts there, then what the guest did there. */
export interface NicDestinationReport {
  readonly pages: number;
  readonly atStart: {
    ram: string; ringPage: string; ramOutsideRingPage: string; nic?: string; regs: Record<string, string>;
    writes: number; nextSeq: number; interrupts: number;
  };
  readonly interrupts: number;
  readonly reports: { progress: number[]; checked: number[]; errors: number[]; hello: number[] };
  readonly stopped: string[];
  /** The fds of kernel objects (KVM's, eventfds, memfds, sockets) the destination held once its VM closed that it did not before. */
  readonly fdsLeft: string[];
}

/** The first page of the ring: the nic writes it again every time round. */
export const RING_PAGE = NIC_GUEST.ring / 4096;

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** Make `tracking` never report page `page` of the VM's first RAM block, though it finds it dirty. */
export function forgetPage(vmm: Vmm, tracking: { sync(precopy: boolean): Promise<number> }, page: number): void {
  const sync = tracking.sync.bind(tracking);
  tracking.sync = async (precopy) => {
    const found = await sync(precopy);
    vmm.memory.blocks[0]!.dirty?.clearRange(page, 1);
    return found;
  };
}

/** Migrate `vmm` to the destination at `uri` over three busy iterations; with the pages KVM's log found at each sync. */
export async function migrateWatchingKvmLog(vmm: Vmm, uri: string) {
  const kvmSyncs: number[] = [];
  vmm.events.on('migration:dirty-sync', (e) => kvmSyncs.push(e.providers.find((p) => p.name === 'kvm-dirty-log')?.pages ?? -1));
  const result = await migrateOutgoing(vmm, await connectWhenListening(uri), { downtimeLimitMs: 0, maxIterations: 3, maxBandwidth: 4 << 20 });
  return { result, kvmSyncs };
}

/** The stopped source's vCPU and guest state are where the destination's guest started, and it went on from there. */
export function expectCarriedOn(src: { host: HostKernel; vmm: Vmm; accel: KvmAccel; reports: NicGuestReports }, report: NicDestinationReport): void {
  const regs = getRegs(src.host, src.accel.vcpus[0]!.fd);
  expect(report.atStart.regs).toEqual(Object.fromEntries(Object.keys(report.atStart.regs).map((r) => [r, String(regs[r as keyof typeof regs])])));
  const state = new DataView(src.vmm.memory.view(NIC_GUEST_PARAMS, NIC_RING_PARAMS_SIZE).slice().buffer);
  expect(report.atStart.nextSeq).toBe(state.getUint32(NIC_RING_PARAM.nextSeq, true));
  // On the destination it goes on from where it stopped: no error, packets after the last it
  // checked on the source, and MSI-X interrupts taken there.
  expect(report.reports.errors.map(nicRingGuestError)).toEqual([]);
  expect(report.reports.hello).toEqual([]);
  expect(report.atStart.interrupts).toBeGreaterThan(0);
  expect(report.interrupts).toBeGreaterThan(report.atStart.interrupts);
  // Its first report there may be of the poll it made just before the pause (stopped between
  // storing its count and reporting it): never below where it stood, and after the last the
  // source heard; by its last it checked packets the destination's nic sent.
  expect(report.reports.checked[0]).toBeGreaterThanOrEqual(report.atStart.nextSeq);
  expect(report.reports.checked[0]).toBeGreaterThan(src.reports.checked.at(-1)!);
  expect(report.reports.checked.at(-1)).toBeGreaterThan(report.atStart.nextSeq);
  // Its next progress report is the one after its last on the source (wherever the pause caught it).
  expect(report.reports.progress[0]).toBe(src.reports.progress.at(-1)! + NIC_GUEST.reportMask + 1);
  expect(report.reports.progress[0]).toBeGreaterThanOrEqual(report.atStart.writes);
  expect(report.stopped).toEqual([]);
  expect(report.fdsLeft).toEqual([]);
}

/** Exactly the ring's first page differs between the source's RAM and the destination's at start. */
export function expectOnlyRingPageDiffers(vmm: Vmm, report: NicDestinationReport): void {
  const rest = vmm.memory.blocks[0]!.mapping.bytes.slice();
  rest.fill(0, NIC_GUEST.ring, NIC_GUEST.ring + 4096);
  expect(report.atStart.ramOutsideRingPage).toBe(sha(rest));
  expect(report.atStart.ringPage).not.toBe(sha(vmm.memory.view(BigInt(NIC_GUEST.ring), 4096)));
}
