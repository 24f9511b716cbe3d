// The nothing-lost migration of the nic-ring guest between two processes (the destination is
// fixtures/kvm-nic-destination.mjs over a Unix socket): guest RAM is dirtied by the vCPU (only
// KVM's log sees it) and by the nic's DMA into the ring (only the device's dirty tracking sees
// it). At switchover the destination's RAM, vCPU registers and nic state equal the source's,
// and the guest carries on there: writing pages and checking the packets the destination's nic
// sends (its MSI-X interrupts now raised there), none missing. A tracker that skips one page the
// nic wrote leaves the destination different.

import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { migrateOutgoing } from '@vmmkit/migration';
import { NIC_A } from '@vmmkit/sim';
import { getRegs, NIC_RING_PARAM, NIC_RING_PARAMS_SIZE, nicRingGuestError } from '../src/index.js';
import { connectWhenListening, runDestination } from './destination-process.js';
import { kvmMissing } from './kvm-rig.js';
import { ramDigest } from './kvm-machine.js';
import { loadNicGuest, NIC_GUEST, NIC_GUEST_PARAMS, NIC_RAM_BYTES, nicVmm, simClock } from './kvm-nic-machine.js';

interface DestinationReport {
  readonly pages: number;
  readonly atStart: { ram: string; ringPage: string; ramOutsideRingPage: string; nic: string; regs: Record<string, string>; writes: number; nextSeq: number; interrupts: number };
  readonly interrupts: number;
  readonly reports: { progress: number[]; checked: number[]; errors: number[]; hello: number[] };
  readonly stopped: string[];
}

function destination(uri: string): Promise<DestinationReport> {
  return runDestination('kvm-nic-destination.mjs', [uri, String(NIC_RAM_BYTES), String(NIC_GUEST_PARAMS)]);
}

/** The first page of the ring: the nic writes it again every time round. */
const RING_PAGE = NIC_GUEST.ring / 4096;

async function migrateBusyGuest(skipRingPage: boolean) {
  const uri = `unix:${join(tmpdir(), `vmmkit-kvm-nic-${process.pid}-${skipRingPage ? 'skip' : 'all'}.sock`)}`;
  const dst = destination(uri);
  dst.catch(() => undefined);
  const src = await nicVmm({ backend: 'iommufd' });
  const stopClock = simClock(src.host);
  try {
    // Interrupt-driven: it halts between polls until the nic's MSI-X message arrives.
    loadNicGuest(src.vmm, src.accel, { ...NIC_GUEST, msix: { vector: 0x41, batch: 8, tables: 0x2000 } });
    src.vmm.resume('test');
    await src.reports.until(() => (src.reports.checked.at(-1) ?? 0) >= 100 && src.reports.progress.length >= 1);
    if (skipRingPage) {
      // A tracker that never reports the ring's first page, though the nic keeps writing it.
      const tracking = src.nic.vfio.container!.dirtyTracking;
      const sync = tracking.sync.bind(tracking);
      tracking.sync = async (precopy) => {
        const found = await sync(precopy);
        src.vmm.memory.blocks[0]!.dirty?.clearRange(RING_PAGE, 1);
        return found;
      };
    }
    const checkedBefore = src.reports.checked.length;
    const kvmSyncs: number[] = [];
    src.vmm.events.on('migration:dirty-sync', (e) => kvmSyncs.push(e.providers.find((p) => p.name === 'kvm-dirty-log')?.pages ?? -1));
    const result = await migrateOutgoing(src.vmm, await connectWhenListening(uri), { downtimeLimitMs: 0, maxIterations: 3, maxBandwidth: 4 << 20 });
    const report = await dst;
    return { src, result, report, checkedBefore, kvmSyncs };
  } catch (e) {
    await src.vmm.close();
    throw e;
  } finally {
    stopClock();
  }
}

describe.skipIf(kvmMissing)('migrating the nic-ring guest on KVM between two processes', () => {
  it('loses nothing: RAM, vCPU and nic state equal at switchover, and the guest receives on', { timeout: 120_000 }, async () => {
    const { src, result, report, checkedBefore, kvmSyncs } = await migrateBusyGuest(false);
    try {
      expect(result.iterations).toBeGreaterThanOrEqual(2);
      // Both trackers saw writes: KVM's log the vCPU's, the nic's DMA logging its own.
      expect(result.containers.map((c) => c.strategy)).toEqual(['device']);
      expect(kvmSyncs.slice(1).some((n) => n > 0), JSON.stringify(kvmSyncs)).toBe(true);
      // The guest ran and received during precopy.
      expect(src.reports.checked.length).toBeGreaterThan(checkedBefore);
      expect(src.reports.errors).toEqual([]);
      expect(report.atStart.ram).toBe(ramDigest(src.vmm.memory));
      expect(report.atStart.nic).toBe(createHash('sha256').update(src.host.sim.deviceState(NIC_A)).digest('hex'));
      const regs = getRegs(src.host, src.accel.vcpus[0]!.fd);
      expect(report.atStart.regs).toEqual(Object.fromEntries(Object.keys(report.atStart.regs).map((r) => [r, String(regs[r as keyof typeof regs])])));
      const state = new DataView(src.vmm.memory.view(NIC_GUEST_PARAMS, NIC_RING_PARAMS_SIZE).slice().buffer);
      expect(report.atStart.nextSeq).toBe(state.getUint32(NIC_RING_PARAM.nextSeq, true));
      // On the destination it goes on from where it stopped: no error, packets after the last it
      // checked on the source, page writes after the last it made there.
      expect(report.reports.errors.map(nicRingGuestError)).toEqual([]);
      expect(report.reports.hello).toEqual([]);
      // Its MSI-X setup (the nic's table and enable, its own APIC) came along: it takes interrupts there.
      expect(src.nic.interruptMode).toBe('msix');
      expect(report.atStart.interrupts).toBeGreaterThan(0);
      expect(report.interrupts).toBeGreaterThan(report.atStart.interrupts);
      expect(report.reports.checked[0]).toBeGreaterThan(report.atStart.nextSeq);
      expect(report.reports.checked[0]).toBeGreaterThan(src.reports.checked.at(-1)!);
      // Its next progress report is the one after its last on the source (wherever the pause caught it).
      const every = NIC_GUEST.reportMask + 1;
      expect(report.reports.progress[0]).toBe(src.reports.progress.at(-1)! + every);
      expect(report.reports.progress[0]).toBeGreaterThanOrEqual(report.atStart.writes);
      expect(report.stopped).toEqual([]);
    } finally {
      await src.vmm.close();
    }
  });

  it('a dirty tracker that skips a page the nic wrote leaves the destination different', { timeout: 120_000 }, async () => {
    const { src, report } = await migrateBusyGuest(true);
    try {
      expect(report.atStart.ram).not.toBe(ramDigest(src.vmm.memory));
      // Exactly the page skipped differs.
      const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
      const rest = src.vmm.memory.blocks[0]!.mapping.bytes.slice();
      rest.fill(0, NIC_GUEST.ring, NIC_GUEST.ring + 4096);
      expect(report.atStart.ramOutsideRingPage).toBe(sha(rest));
      expect(report.atStart.ringPage).not.toBe(sha(src.vmm.memory.view(BigInt(NIC_GUEST.ring), 4096)));
    } finally {
      await src.vmm.close();
    }
  });
});
