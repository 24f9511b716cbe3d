// The demo's HTML report: its settings in words and the runs, rendered by ../report and written
// to the file given with --report.

import { statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { formatBytes, formatCount } from '../report/format.js';
import type { MigrationReport, ReportRun } from '../report/migration-record.js';
import { renderReport } from '../report/render-report.js';
import type { DemoOptions } from './demo-args.js';
import { DEMO_WORKLOAD } from './demo-scenario.js';

/** Why the report cannot be written to `file` (checked before migrating), or undefined. */
export function reportPathProblem(file: string): string | undefined {
  const path = resolve(file);
  const stat = (p: string) => statSync(p, { throwIfNoEntry: false });
  if (stat(path)?.isDirectory()) return `'${file}' is a directory`;
  const parent = stat(dirname(path));
  if (!parent) return `'${file}': the directory ${dirname(path)} does not exist`;
  if (!parent.isDirectory()) return `'${file}': ${dirname(path)} is not a directory`;
  return undefined;
}

/** The report of `runs` made with `options`. */
export function demoReport(options: DemoOptions, runs: readonly ReportRun[], generatedAt = new Date()): MigrationReport {
  const w = DEMO_WORKLOAD;
  const memory = options.memoryMiB * 2 ** 20;
  return {
    title: options.compare ? 'vmmkit live migration: dirty-tracking strategies compared' : `vmmkit live migration (${options.strategy} dirty tracking)`,
    generatedAt: `generated ${generatedAt.toISOString()} by npm run demo`,
    downtimeLimitMs: options.downtimeLimitMs,
    settings: [
      ['hosts', 'two SimHosts (the simulated Linux VFIO + IOMMUFD kernel): source, and destination created incoming'],
      ['devices', 'NIC A: vfio-pci on the legacy type1 backend; NIC B: vfio-pci on IOMMUFD (iommufd0)'],
      ['guest RAM', `${formatBytes(memory)} (a quarter of it, ${formatBytes(memory * w.workingSet)}, is the working set, filled at boot)`],
      ['guest writes', `${formatBytes(w.writeBytesPerSecond)}/s of 64-byte stores at random in the working set`],
      ['NIC traffic', `${formatCount(w.packetsPerSecond)} packets/s of 2 KiB into each NIC's ring`],
      ['downtime limit', `${options.downtimeLimitMs} ms`],
      ['max bandwidth', `${options.maxBandwidthMiBs} MiB/s`],
      ['max iterations', String(options.maxIterations)],
      [options.compare ? 'strategies' : 'strategy', runs.map((r) => r.record.label).join(', ')],
    ],
    runs,
  };
}

/** Render the report of `runs` and write it to `file`. */
export async function writeDemoReport(file: string, options: DemoOptions, runs: readonly ReportRun[]): Promise<void> {
  await writeFile(file, renderReport(demoReport(options, runs)));
}
