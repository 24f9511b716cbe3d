// The nothing-lost migration of a guest on KVM between two processes (the destination is
// fixtures/kvm-destination.mjs over a Unix socket): the destination's RAM and registers as its
// guest starts equal the source's at switchover, and the guest goes on counting there.

import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { connectMigration, migrateOutgoing } from '@vmmkit/migration';
import { getRegs } from '../src/index.js';
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
  const script = fileURLToPath(new URL('./fixtures/kvm-destination.mjs', import.meta.url));
  const child = spawn(process.execPath, [script, uri, String(RAM_BYTES)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return {
    done: new Promise((resolve, reject) => {
      child.on('exit', (code) => {
        const last = out.trim().split('\n').at(-1) ?? '';
        if (code === 0) resolve(JSON.parse(last) as DestinationReport);
        else reject(new Error(`the destination exited with ${code}: ${err || last}`));
      });
    }),
  };
}

async function connect(uri: string) {
  for (let i = 0; ; i++) {
    try {
      return await connectMigration(uri, { timeoutMs: 2000 });
    } catch (e) {
      if (i > 100) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
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
      const transport = await connect(uri);
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
