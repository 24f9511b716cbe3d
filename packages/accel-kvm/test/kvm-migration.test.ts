// Nothing is lost migrating a guest that runs on KVM: its vCPU dirties RAM throughout precopy
// (only KVM's dirty log sees those writes), and at switchover the destination's RAM and vCPU
// registers equal the source's; the guest then carries on counting on the destination from
// exactly where it stopped. A dirty log that drops one page leaves the destination different.

import { describe, expect, it } from 'vitest';
import { migrate } from '@vmmkit/migration';
import { getRegs, setRegs } from '../src/index.js';
import { kvmMissing } from './kvm-rig.js';
import { kvmVmm, loadPagesGuest, ramDigest } from './kvm-machine.js';

const ARENA_PAGES = 64;
/** The guest reports every 4096 writes (about 0.1 s on kvm_pvm): between reports it runs without the main thread. */
const REPORT_EVERY = 1 << 12;
/** Paced at 1 MiB/s, a pass over the guest's pages takes long enough for it to write many. */
const SLOW = { downtimeLimitMs: 0, maxIterations: 3, maxBandwidth: 1 << 20 };

async function setUp() {
  const src = await kvmVmm();
  // The destination's RAM and registers are read as it starts, before its vCPUs run: this
  // listener comes before the accelerator's.
  let atStart: { ram: string; rip: bigint; rbx: bigint; rsi: bigint } | undefined;
  let dst: Awaited<ReturnType<typeof kvmVmm>> | undefined;
  dst = await kvmVmm({
    incoming: true,
    beforeAccel: (vmm) => vmm.events.on('vm:run-state', (e) => {
      if (!e.running || atStart) return;
      const regs = getRegs(vmm.host, dst!.accel.vcpus[0]!.fd);
      atStart = { ram: ramDigest(vmm.memory), rip: regs.rip, rbx: regs.rbx, rsi: regs.rsi };
    }),
  });
  loadPagesGuest(src.vmm, src.accel, { seed: 0xc0ffee, arenaPages: ARENA_PAGES, reportMask: REPORT_EVERY - 1 });
  src.vmm.resume('test');
  await src.reports.until(() => src.reports.progress.length >= 2);
  return { src, dst, atStart: () => atStart };
}

// kvm_pvm is slow and the machine shared: room beyond vitest's 5 s default (a bound, not a measurement).
describe.skipIf(kvmMissing)('migrating a guest on KVM', { timeout: 30_000 }, () => {
  it('loses nothing: RAM and vCPU state equal at switchover, and the guest counts on', async () => {
    const { src, dst, atStart } = await setUp();
    try {
      const syncs: number[] = [];
      src.vmm.events.on('migration:dirty-sync', (e) => syncs.push(e.providers.find((p) => p.name === 'kvm-dirty-log')?.pages ?? -1));
      const before = src.reports.progress.length;
      const result = await migrate(src.vmm, dst.vmm, SLOW);
      // The guest ran during precopy, and only KVM's log can have seen its writes.
      expect(result.iterations).toBeGreaterThanOrEqual(2);
      expect(src.reports.progress.length).toBeGreaterThan(before);
      expect(syncs.reduce((a, b) => a + b, 0), JSON.stringify(syncs)).toBeGreaterThan(0);
      expect(src.vmm.running).toBe(false);
      expect(dst.vmm.running).toBe(true);
      const start = atStart()!;
      expect(start).toBeDefined();
      expect(start.ram).toBe(ramDigest(src.vmm.memory));
      const regs = getRegs(src.host, src.accel.vcpus[0]!.fd);
      expect({ rip: start.rip, rbx: start.rbx, rsi: start.rsi }).toEqual({ rip: regs.rip, rbx: regs.rbx, rsi: regs.rsi });
      // The guest goes on from where it stopped on the source: its next reports, none skipped.
      const next = (Math.floor(Number(start.rsi) / REPORT_EVERY) + 1) * REPORT_EVERY;
      await dst.reports.until(() => dst.reports.progress.length >= 2);
      expect(dst.reports.progress.slice(0, 2)).toEqual([next, next + REPORT_EVERY]);
      expect(src.reports.progress.at(-1)).toBeLessThan(next);
      expect(dst.reports.hello).toEqual([]);
      expect(dst.accel.stopped).toEqual([]);
    } finally {
      await src.vmm.close();
      await dst.vmm.close();
    }
  });

  it('a dirty log that drops a page leaves the destination different', async () => {
    const { src, dst, atStart } = await setUp();
    try {
      src.accel.vm.dirtyLog.fault = { block: 'low', page: 0x100 };
      await migrate(src.vmm, dst.vmm, SLOW);
      expect(atStart()!.ram).not.toBe(ramDigest(src.vmm.memory));
    } finally {
      await src.vmm.close();
      await dst.vmm.close();
    }
  });

  it('a VM with 8 vCPUs: its state (about 75 KiB, one record) arrives whole, each vCPU its own registers', async () => {
    const src = await kvmVmm({ device: 'kvm,id=kvm0,vcpus=8' });
    const dst = await kvmVmm({ incoming: true, device: 'kvm,id=kvm0,vcpus=8' });
    try {
      src.accel.vcpus.forEach((v, i) => setRegs(src.host, v.fd, { rbx: BigInt(0x1000 + i), rip: 0xfff0n }));
      expect(src.accel.saveState().byteLength).toBeGreaterThan(64 * 1024);
      await migrate(src.vmm, dst.vmm, { maxIterations: 1 });
      expect(dst.accel.vcpus.map((v) => getRegs(dst.host, v.fd).rbx)).toEqual(src.accel.vcpus.map((_, i) => BigInt(0x1000 + i)));
    } finally {
      await src.vmm.close();
      await dst.vmm.close();
    }
  });
});
