// The runs of a comparison side by side (one workload, one run per dirty-tracking strategy):
// pages sent, bytes on the stream, precopy iterations and downtime, a bar per run.

import { formatBytes, formatCount, formatMs } from './format.js';
import type { MigrationOutcome, ReportRun } from './migration-record.js';
import { renderBarChart } from './svg/bar-chart.js';

const COLOURS = { pages: '#4e79a7', bytes: '#59a14f', iterations: '#b07aa1', downtime: '#e15759' };

/** Four SVG charts comparing the completed runs (runs without an outcome are left out). */
export function renderCompareCharts(runs: readonly ReportRun[], downtimeLimitMs?: number): string[] {
  const done = runs.filter((r): r is ReportRun & { record: { outcome: MigrationOutcome } } => r.record.outcome !== undefined);
  const categories = done.map((r) => r.record.label);
  const of = (pick: (o: MigrationOutcome) => number): number[] => done.map((r) => pick(r.record.outcome));
  const chart = (title: string, unit: string, colour: string, values: number[], format: (v: number) => string, limit?: number): string =>
    renderBarChart({
      title, unit, categories, series: [{ name: title, color: colour, values }], format, labels: values.map(format), width: 400,
      reference: limit === undefined ? undefined : { value: limit, label: `limit ${formatMs(limit)}` },
    });
  return [
    chart('Pages sent with data', 'pages', COLOURS.pages, of((o) => o.pagesSent), formatCount),
    // In MiB, so that the axis gets round ticks.
    chart('Bytes on the stream', 'MiB', COLOURS.bytes, of((o) => o.bytesSent / 2 ** 20), (v) => formatBytes(v * 2 ** 20)),
    chart('Precopy iterations', 'iterations', COLOURS.iterations, of((o) => o.iterations), formatCount),
    chart('Downtime', 'ms', COLOURS.downtime, of((o) => o.downtimeMs), formatMs, downtimeLimitMs),
  ];
}
