// The demo end to end, in process, with a small guest: it shows the plan and the passes,
// verifies the destination, writes the report; JSON for machines; status 2 for a bad flag.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { DemoIo } from '../src/demo/demo-io.js';
import { kvmUnavailable } from '../src/demo/kvm-demo-guest.js';
import { runDemo } from '../src/demo/run-demo.js';
import type { ReportRun } from '../src/report/migration-record.js';
import { svgElements, xmlProblems } from './report-xml.js';

function captured(): DemoIo & { text: { out: string; err: string } } {
  const text = { out: '', err: '' };
  return { text, out: { write: (s: string) => (text.out += s) }, err: { write: (s: string) => (text.err += s) } };
}

// A guest small enough to migrate in well under a second at this bandwidth.
const SMALL = ['--memory', '32', '--max-bandwidth', '256'];
const dir = mkdtempSync(join(tmpdir(), 'vmmkit-demo-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('npm run demo', () => {
  it('migrates, verifies the destination and writes the report', async () => {
    const io = captured();
    const report = join(dir, 'report.html');
    expect(await runDemo([...SMALL, '--report', report], io)).toBe(0);
    const out = io.text.out;
    expect(io.text.err).toBe('');
    expect(out).toMatch(/Migration plan\n.*container .*backend .*strategy .*devices .*why/);
    expect(out).toMatch(/legacy-container-\d+ +vfio-iommu-legacy +device +NIC A\/type1 0000:00:05\.0/);
    expect(out).toMatch(/iommufd-ioas-\S+ +vfio-iommu-iommufd +device +NIC B\/iommufd 0000:00:06\.0/);
    expect(out).toContain('blockers: none');
    expect(out).toMatch(/iteration 2 +found [\d,]+ dirty pages: guest writes [\d,]+ · NIC A\/type1 \(device\) [\d,]+ · NIC B\/iommufd \(device\) [\d,]+/);
    expect(out).toMatch(/switchover +expected downtime .* ≤ limit 300 ms: converged/);
    expect(out).toContain('Result: verified, the destination equals the source');
    expect(out).toMatch(/RAM +SHA-256 equal on both sides: [0-9a-f]{64}/);
    expect(out).toMatch(/NIC A state +equal/);
    expect(out).toMatch(/NIC B state +equal/);
    // Not a terminal: no redrawn progress bar.
    expect(out).not.toContain('\x1b');
    const html = readFileSync(report, 'utf8');
    expect(html).toContain('vmmkit live migration (device dirty tracking)');
    const svgs = svgElements(html);
    expect(svgs).toHaveLength(4);
    for (const svg of svgs) expect(xmlProblems(svg)).toEqual([]);
  });

  it('prints JSON with --json, one run per strategy with --compare', async () => {
    const io = captured();
    expect(await runDemo([...SMALL, '--max-iterations', '2', '--compare', '--json'], io)).toBe(0);
    const result = JSON.parse(io.text.out) as { ok: boolean; runs: ReportRun[] };
    expect(result.ok).toBe(true);
    expect(result.runs.map((r) => [r.record.label, r.record.containers.map((c) => c.strategy)])).toEqual([
      ['device', ['device', 'device']], ['iommu', ['iommu', 'iommu']], ['all-dirty', ['all-dirty', 'all-dirty']],
    ]);
    for (const r of result.runs) {
      expect(r.verification?.ram.equal).toBe(true);
      expect(r.verification?.devices.map((d) => [d.name, d.equal])).toEqual([['NIC A', true], ['NIC B', true]]);
    }
  });

  it.for([
    [['--memory', 'x'], `demo: --memory: 'x' is not a whole number of MiB from 32 to 4096\n`],
    [['--report', join(dir, 'missing', 'r.html')], `demo: --report: '${join(dir, 'missing', 'r.html')}': the directory ${join(dir, 'missing')} does not exist\n`],
  ] as const)('exits with status 2 for %j', async ([argv, message]) => {
    const io = captured();
    expect(await runDemo([...argv], io)).toBe(2);
    expect(io.text.err).toBe(message);
    expect(io.text.out).toBe('');
  });

  it('says when --kvm cannot run here and runs the JavaScript guest instead', async () => {
    const io = captured();
    expect(await runDemo([...SMALL, '--kvm'], io, () => '/dev/kvm is not usable here (ENOENT)')).toBe(0);
    expect(io.text.err).toBe('demo: --kvm: /dev/kvm is not usable here (ENOENT); running the JavaScript guest on simulated hosts instead\n');
    expect(io.text.out).toContain('between two VMMs on simulated hosts');
    expect(io.text.out).toContain('Result: verified, the destination equals the source');
  });
});

describe.skipIf(kvmUnavailable())('npm run demo -- --kvm', () => {
  it('migrates a real guest on KVM that receives from NIC A, verifies the destination as it started, and the guest carries on there', { timeout: 120_000 }, async () => {
    const io = captured();
    expect(await runDemo([...SMALL, '--kvm'], io)).toBe(0);
    const out = io.text.out;
    expect(io.text.err).toBe('');
    expect(out).toContain('live migration of a VM on KVM with two assigned NICs (simulated)');
    expect(out).toMatch(/VMM +composed from plugins: accel-kvm, /);
    expect(out).toMatch(/workload +a bare-metal guest on KVM \(vCPU 0\) finds NIC A through PCI config space/);
    expect(out).toMatch(/iteration 2 +found [\d,]+ dirty pages: .*kvm-dirty-log [\d,]+/);
    expect(out).toContain('Result: verified, the destination equals the source');
    expect(out).toMatch(/NIC A state +equal/);
    const [, there, before] = /On the destination, the guest carried on: (\d+) packets checked \((\d+) on the source\)/.exec(out) ?? [];
    expect(Number(there)).toBeGreaterThan(Number(before));
  });
});
