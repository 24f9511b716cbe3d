// What the demo prints, as text: the VMM and its guest, the migration plan, the verified
// result, and the comparison of strategies.

import type { MigrationPlan } from '@vmmkit/migration';
import { countOf, formatBytes, formatCount, formatMs, formatRate } from '../report/format.js';
import type { ReportRun } from '../report/migration-record.js';
import type { DemoPair } from './demo-pair.js';
import { DEMO_NICS } from './demo-pair.js';

/** Columns padded to their widest cell, each row indented. */
export function textTable(rows: readonly (readonly string[])[], indent = '  '): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => indent + r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('   ')).join('\n') + '\n';
}

const BACKENDS: Readonly<Record<string, string>> = { 'vfio-iommu-legacy': 'type1', 'vfio-iommu-iommufd': 'iommufd' };

/** Container id → what to call it: the NICs in it and its backend (`NIC A/type1`). */
export function containerNames(plan: MigrationPlan): Map<string, string> {
  return new Map(plan.containers.map((c) => {
    const nics = c.devices.map((d) => DEMO_NICS.find((n) => n.host === d)?.name ?? d).join('+');
    return [c.container, `${nics}/${BACKENDS[c.backend] ?? c.backend}`];
  }));
}

/** The VMM, the host, the guest and its workload. */
export function introText(pair: DemoPair, plan: MigrationPlan, plugins: readonly string[]): string {
  const vm = pair.source.vm;
  const ram = vm.vmm.memory.blocks.map((b) => `${b.name} ${formatBytes(Number(b.size))} at 0x${b.gpa.toString(16)}`).join(', ');
  const total = vm.vmm.memory.blocks.reduce((n, b) => n + Number(b.size), 0);
  const nics = DEMO_NICS.map((nic) => {
    const device = plan.devices.find((d) => d.name === nic.host);
    const container = plan.containers.find((c) => c.container === device?.container);
    const backend = container?.backend === 'vfio-iommu-iommufd' ? 'IOMMUFD (iommufd0)' : `legacy type1 (${pair.scenario.vm.type1ContainerPath ?? '/dev/vfio/vfio'})`;
    return [nic.name, `vfio-pci host=${nic.host} → ${backend}, container ${device?.container ?? '?'}`];
  });
  return textTable([
    ['VMM', `composed from plugins: ${plugins.join(', ')}`],
    ['hosts', pair.kvm
      ? 'this machine\'s KVM on both sides, each with a simulated machine beside it (HybridHost): one IOMMU, two migratable NICs, an edu device'
      : 'two SimHosts (source, destination): one IOMMU, two migratable NICs, an edu device'],
    ['guest', `${formatBytes(total)} of RAM: ${ram}`],
    ...nics,
    ['workload', pair.activity.description],
    ['tracking', pair.scenario.setup],
  ]);
}

/** Each container's backend, strategy, devices and why; the blockers and warnings. */
export function planText(plan: MigrationPlan, names: ReadonlyMap<string, string>): string {
  const rows = [['container', 'backend', 'strategy', 'devices', 'why'], ...plan.containers.map((c) => [
    c.container, c.backend, c.strategy, `${names.get(c.container) ?? ''} ${c.devices.join(', ')}`.trim(), c.reason,
  ])];
  const blockers = plan.blockers.length ? plan.blockers.map((b) => `  BLOCKER: ${b.reason}\n`).join('') : '  blockers: none\n';
  // docs/migration.md: type1 cannot see what an IOMMU-backed device writes.
  const type1 = plan.containers.some((c) => c.backend === 'vfio-iommu-legacy' && c.strategy === 'iommu')
    ? '  note: type1 dirty tracking cannot see device writes, so it reports every mapped page dirty at every sync;\n'
      + '        a page is counted once, by the first tracker that reports it\n'
    : '';
  const warnings = plan.warnings.map((w) => `  warning: ${w}\n`).join('');
  return `Migration plan\n${textTable(rows)}${blockers}${warnings}${type1}`;
}

/** The verified result of one run. */
export function resultText(run: ReportRun, names: ReadonlyMap<string, string>, downtimeLimitMs: number): string {
  const o = run.record.outcome!;
  const v = run.verification!;
  const containers = o.containers.map((c) => `${names.get(c.container) ?? c.container}: ${c.strategy} (${formatCount(c.dirtyPages)} pages found)`);
  const rows = [
    ['RAM', v.ram.equal ? `SHA-256 equal on both sides: ${v.ram.source}` : `DIFFERS: source ${v.ram.source}, destination ${v.ram.destination}`],
    ...v.devices.map((d) => [
      `${d.name} state`,
      d.equal ? `equal (${formatBytes(d.bytes)}, SHA-256 ${d.source.slice(0, 16)}…)` : `DIFFERS: ${d.source.slice(0, 16)}… ≠ ${d.destination.slice(0, 16)}…`,
    ]),
    ['downtime', `${formatMs(o.downtimeMs)} (expected ${formatMs(o.expectedDowntimeMs)}, limit ${formatMs(downtimeLimitMs)})`],
    ['converged', `${o.converged ? 'yes, after' : 'no: switched over after'} ${countOf(o.iterations, 'precopy iteration')}`],
    ['pages sent', `${formatCount(o.pagesSent)} with data + ${formatCount(o.zeroPages)} zero pages as markers`],
    ['device state', formatBytes(o.deviceBytes)],
    ['stream', `${formatBytes(o.bytesSent)} in ${formatMs(o.durationMs)} (${formatRate(o.throughput)})`],
    ['strategies', containers.join(' · ')],
  ];
  const hint = o.converged ? '' : '  hint: each pass found more dirty pages than fit the downtime limit at this bandwidth; '
    + 'raise --max-bandwidth or --downtime-limit, or let the devices track (--strategy device)\n';
  return `Result: ${v.ok ? 'verified, the destination equals the source' : 'VERIFICATION FAILED'}\n${textTable(rows)}${hint}`;
}

/** The runs of --compare side by side. */
export function comparisonText(runs: readonly ReportRun[]): string {
  const rows = [['strategy', 'iterations', 'converged', 'pages sent', 'zero pages', 'stream', 'downtime', 'verified'], ...runs.map((r) => {
    const o = r.record.outcome!;
    return [
      r.record.label, String(o.iterations), o.converged ? 'yes' : 'no', formatCount(o.pagesSent), formatCount(o.zeroPages),
      formatBytes(o.bytesSent), formatMs(o.downtimeMs), r.verification?.ok ? 'yes' : 'NO',
    ];
  })];
  return `Strategies compared on the same workload\n${textTable(rows)}`;
}
