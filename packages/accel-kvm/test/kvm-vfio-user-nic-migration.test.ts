// The nothing-lost migration of the nic-ring guest on KVM with the nic served over vfio-user, all
// real: LinuxHost with memfd guest RAM, the source VMM in this process, the destination VMM in a
// second (fixtures/kvm-nic-destination.mjs given the nic's socket), each VM's nic served by a
// process of its own. Guest RAM is dirtied by the vCPU (only KVM's log sees it) and by the nic's
// DMA into the ring (only the server's DMA logging over vfio-user sees it); the nic's state moves
// over MIG_DATA. At switchover the destination's RAM and vCPU registers equal the source's, the
// destination's nic started from the state the source's stopped with, and the guest carries on
// there (further packets checked, no errors, MSI-X interrupts taken) with the fast paths in
// place: its vector routed through KVM's irqfd router, BAR2's memory as memslots and the doorbell
// as an ioeventfd. A tracker that skips one page the nic wrote leaves the destination different.

import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { migrationPlugin } from '@vmmkit/migration';
import { NIC_BAR2_REG_PAGE, NIC_DOORBELL } from '@vmmkit/sim';
import { runDestination } from './destination-process.js';
import { kvmMissing } from './kvm-rig.js';
import { ramDigest } from './kvm-machine.js';
import { loadNicGuest, NIC_GUEST, NIC_GUEST_PARAMS, NIC_RAM_BYTES, NicGuestReports } from './kvm-nic-machine.js';
import { kvmVfioUserMachine, startNicServer, type NicServerProcess } from './kvm-vfio-user-machine.js';
import { expectCarriedOn, expectOnlyRingPageDiffers, forgetPage, migrateWatchingKvmLog, RING_PAGE, type NicDestinationReport } from './nic-migration-checks.js';

/** The destination's report with the page digests and the fast paths it had (vfio-user). */
interface DestinationReport extends NicDestinationReport {
  readonly atStart: NicDestinationReport['atStart'] & { pages: string[] };
  readonly fastPaths: {
    routedVectors: number[]; irqfds: number; msiErrors: string[]; barErrors: string[];
    bars: { bar: number; start: string; memslots: [string, string][]; ioeventfds: string[] }[];
  };
}

const MSIX_GUEST = { ...NIC_GUEST, msix: { vector: 0x41, batch: 8, tables: 0x2000 } };
const fds = (): number => readdirSync('/proc/self/fd').length;
/** The pages of `bytes` whose digest differs from the destination's at start. */
function differingPages(bytes: Uint8Array, pages: readonly string[]): number[] {
  const digest = (i: number): string => createHash('sha256').update(bytes.subarray(i * 4096, (i + 1) * 4096)).digest('hex').slice(0, 16);
  return pages.flatMap((d, i) => (digest(i) === d ? [] : [i]));
}

describe.skipIf(kvmMissing)('migrating the nic-ring guest on KVM with the nic served over vfio-user, between two processes', () => {
  let dir: string | undefined;
  const servers: NicServerProcess[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  async function migrateBusyGuest(skipRingPage: boolean) {
    dir = mkdtempSync(join(tmpdir(), 'vmmkit-kvm-vu-mig-'));
    const [srcNic, dstNic] = await Promise.all([startNicServer(join(dir, 'src.sock')), startNicServer(join(dir, 'dst.sock'))]);
    servers.push(srcNic, dstNic);
    const uri = `unix:${join(dir, 'migration.sock')}`;
    const dst = runDestination<DestinationReport>('kvm-nic-destination.mjs', [uri, String(NIC_RAM_BYTES), String(NIC_GUEST_PARAMS), join(dir, 'dst.sock')]);
    dst.catch(() => undefined);
    const src = await kvmVfioUserMachine({ socket: join(dir, 'src.sock'), id: 'nic0', ramBytes: NIC_RAM_BYTES, plugins: [migrationPlugin()], reports: new NicGuestReports() });
    try {
      // Interrupt-driven: it halts between polls until the nic's MSI-X message arrives (by irqfd).
      loadNicGuest(src.vmm, src.accel, MSIX_GUEST);
      src.vmm.resume('test');
      await src.reports.until(() => (src.reports.checked.at(-1) ?? 0) >= 100 && src.reports.progress.length >= 1, 60_000);
      expect(src.device.routedVectors).toEqual([0]);
      // A tracker that never reports the ring's first page, though the nic keeps writing it.
      if (skipRingPage) forgetPage(src.vmm, src.device.vfio.container!.dirtyTracking, RING_PAGE);
      const checkedBefore = src.reports.checked.length;
      const { result, kvmSyncs } = await migrateWatchingKvmLog(src.vmm, uri);
      // The source's nic as it stopped, and the state the destination's nic started from.
      const [stopped, loaded] = await Promise.all([srcNic.state(), dstNic.startedState()]);
      const report = await dst;
      return { src, result, report, checkedBefore, kvmSyncs, stopped, loaded };
    } catch (e) {
      await src.close();
      throw e;
    }
  }

  it('loses nothing: RAM, vCPU and nic state equal at switchover; the guest receives on with irqfd, ioeventfd and memslots in place', { timeout: 180_000 }, async () => {
    const fdsBefore = fds();
    const { src, result, report, checkedBefore, kvmSyncs, stopped, loaded } = await migrateBusyGuest(false);
    try {
      expect(result.iterations).toBeGreaterThanOrEqual(2);
      // Both trackers saw writes: KVM's log the vCPU's, the server's DMA logging the nic's.
      expect(result.containers.map((c) => [c.backend, c.strategy])).toEqual([['vfio-iommu-user', 'device']]);
      expect(result.containers[0]!.dirtyPages).toBeGreaterThan(0);
      expect(kvmSyncs.slice(1).some((n) => n > 0), JSON.stringify(kvmSyncs)).toBe(true);
      expect(result.deviceBytes).toBeGreaterThan(0);
      expect(src.reports.checked.length).toBeGreaterThan(checkedBefore);
      expect(src.reports.errors).toEqual([]);
      expect(differingPages(src.vmm.memory.blocks[0]!.mapping.bytes, report.atStart.pages)).toEqual([]);
      expect(report.atStart.ram).toBe(ramDigest(src.vmm.memory));
      // The destination's nic started from the state the source's stopped with (over MIG_DATA).
      expect(stopped.byteLength).toBeGreaterThan(0);
      expect(loaded.toString('hex')).toBe(stopped.toString('hex'));
      expectCarriedOn(src, report);
      // The fast paths on the destination: the vector through the irqfd router, BAR2's memory as
      // memslots around the register page, the doorbell in it as an ioeventfd.
      expect(report.fastPaths.routedVectors).toEqual([0]);
      expect(report.fastPaths.irqfds).toBe(1);
      expect(report.fastPaths.msiErrors).toEqual([]);
      expect(report.fastPaths.barErrors).toEqual([]);
      const bar2 = BigInt(NIC_GUEST.bar2);
      const area = BigInt(NIC_BAR2_REG_PAGE + 0x1000);
      expect(report.fastPaths.bars.find((b) => b.bar === 2)).toEqual({
        bar: 2, start: String(bar2),
        memslots: [[String(bar2), String(NIC_BAR2_REG_PAGE)], [String(bar2 + area), String(0x10000n - area)]],
        ioeventfds: [String(bar2 + BigInt(NIC_DOORBELL))],
      });
      // The source's irqfd is still in place (its VM stopped, not torn down) until it closes.
      expect(src.device.routedVectors).toEqual([0]);
    } finally {
      await src.close();
    }
    // Closed, and its nic's server gone: nothing of the source is left in this process.
    for (const s of servers.splice(0)) await s.kill();
    expect(fds()).toBe(fdsBefore);
  });

  it('a dirty tracker that skips a page the nic wrote leaves the destination different', { timeout: 180_000 }, async () => {
    const { src, report, stopped, loaded } = await migrateBusyGuest(true);
    try {
      expect(loaded.toString('hex')).toBe(stopped.toString('hex'));
      expect(differingPages(src.vmm.memory.blocks[0]!.mapping.bytes, report.atStart.pages)).toEqual([RING_PAGE]);
      expectOnlyRingPageDiffers(src.vmm, report);
    } finally {
      await src.close();
    }
  });
});
