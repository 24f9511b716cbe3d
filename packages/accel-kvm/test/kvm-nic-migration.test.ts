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
import { NIC_A } from '@vmmkit/sim';
import { runDestination } from './destination-process.js';
import { kvmMissing } from './kvm-rig.js';
import { ramDigest } from './kvm-machine.js';
import { loadNicGuest, NIC_GUEST, NIC_GUEST_PARAMS, NIC_RAM_BYTES, nicVmm, simClock } from './kvm-nic-machine.js';
import { expectCarriedOn, expectOnlyRingPageDiffers, forgetPage, migrateWatchingKvmLog, RING_PAGE, type NicDestinationReport } from './nic-migration-checks.js';

function destination(uri: string): Promise<NicDestinationReport> {
  return runDestination('kvm-nic-destination.mjs', [uri, String(NIC_RAM_BYTES), String(NIC_GUEST_PARAMS)]);
}

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
    // A tracker that never reports the ring's first page, though the nic keeps writing it.
    if (skipRingPage) forgetPage(src.vmm, src.nic.vfio.container!.dirtyTracking, RING_PAGE);
    const checkedBefore = src.reports.checked.length;
    const { result, kvmSyncs } = await migrateWatchingKvmLog(src.vmm, uri);
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
      // Its MSI-X setup (the nic's table and enable, its own APIC) came along: it takes interrupts there.
      expect(src.nic.interruptMode).toBe('msix');
      expectCarriedOn(src, report);
    } finally {
      await src.vmm.close();
    }
  });

  it('a dirty tracker that skips a page the nic wrote leaves the destination different', { timeout: 120_000 }, async () => {
    const { src, report } = await migrateBusyGuest(true);
    try {
      expect(report.atStart.ram).not.toBe(ramDigest(src.vmm.memory));
      expectOnlyRingPageDiffers(src.vmm, report);
    } finally {
      await src.vmm.close();
    }
  });
});
