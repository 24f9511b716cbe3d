// The nothing-lost migration of a guest on KVM between two processes (the destination is
// fixtures/kvm-destination.mjs over a Unix socket): the destination's RAM and registers as its
// guest starts equal the source's at switchover, and the guest goes on counting there.

import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { migrateOutgoing } from '@vmmkit/migration';
import { getRegs } from '../src/index.js';
import { connectWhenListening, runDestination } from './destination-process.js';
import { kvmMissing } from './kvm-rig.js';
import { kvmVmm, loadPagesGuest, RAM_BYTES, ramDigest } from './kvm-machine.js';

const REPORT_EVERY = 1 << 12;

interface DestinationReport {
  readonly pages: number;
  readonly atStart: { ram: string; rip: string; rbx: string; rsi: string };
  readonly progress: number[];
  readonly stopped: string[];
}

function destination(uri: string): { done: Promise<DestinationReport> } {
  return { done: runDestination('kvm-destination.mjs', [uri, String(RAM_BYTES)]) };
}

describe.skipIf(kvmMissing)('migrating a guest on KVM between two processes', () => {
  it('the destination process starts with the source\'s RAM and registers, and the guest counts on', { timeout: 60_000 }, async () => {
    const uri = `unix:${join(tmpdir(), `vmmkit-kvm-${process.pid}.sock`)}`;
    const dst = destination(uri);
    const src = await kvmVmm();
    try {
      loadPagesGuest(src.vmm, src.accel, { seed: 0xbeef, arenaPages: 64, reportMask: REPORT_EVERY - 1 });
      src.vmm.resume('test');
      await src.reports.until(() => src.reports.progress.length >= 2);
      const transport = await connectWhenListening(uri, 100);
      const result = await migrateOutgoing(src.vmm, transport, { downtimeLimitMs: 0, maxIterations: 3, maxBandwidth: 1 << 20 });
      expect(result.iterations).toBeGreaterThanOrEqual(2);
      const report = await dst.done;
      expect(report.atStart.ram).toBe(ramDigest(src.vmm.memory));
      const regs = getRegs(src.host, src.accel.vcpus[0]!.fd);
      expect(report.atStart).toMatchObject({ rip: String(regs.rip), rbx: String(regs.rbx), rsi: String(regs.rsi) });
      const next = (Math.floor(Number(regs.rsi) / REPORT_EVERY) + 1) * REPORT_EVERY;
      expect(report.progress).toEqual([next, next + REPORT_EVERY]);
      expect(report.stopped).toEqual([]);
    } finally {
      await src.vmm.close();
    }
  });
});
