// The charts of one migration, pass by pass: the dirty pages each tracker found, what was sent,
// the throughput, and the expected downtime at each decision against the limit.

import { formatBytes, formatCount, formatMs, formatRate } from './format.js';
import type { MigrationRecord, PassRecord, TrackerPages } from './migration-record.js';
import { renderBarChart, type BarSeries } from './svg/bar-chart.js';

/** Colours of trackers after the guest's writes, in the order they first appear. */
const PALETTE = ['#f28e2b', '#59a14f', '#b07aa1', '#76b7b2', '#edc948', '#ff9da7', '#9c755f'];
const GUEST = '#4e79a7';
const ALL_RAM = '#bab0ac';
const ZERO = '#d4d4d4';
const MEASURED = '#e15759';
const MiB = 2 ** 20;

/**
 * Where to cut the value axis when the first pass (all of RAM) dwarfs the others, so that the
 * later passes stay readable: a bit over the tallest of them.
 */
export function clipFirst(totals: readonly number[]): number | undefined {
  const rest = Math.max(0, ...totals.slice(1));
  return rest > 0 && (totals[0] ?? 0) > 2.5 * rest ? rest * 1.4 : undefined;
}

/** A pass's name on the charts: its iteration number, or `stop-copy`. */
export function passLabel(pass: PassRecord): string {
  return pass.phase === 'stop-copy' ? 'stop-copy' : String(pass.iteration);
}

/** A tracker's name in legends: a container with its strategy. */
export function trackerName(t: TrackerPages): string {
  return t.strategy ? `${t.label} (${t.strategy})` : t.label;
}

/** Every SVG chart of one migration, in reading order. */
export function renderRunCharts(record: MigrationRecord, downtimeLimitMs?: number): string[] {
  return [dirtyChart(record), sentChart(record), throughputChart(record), downtimeChart(record, downtimeLimitMs)];
}

/** Dirty pages found per pass, stacked by tracker: guest writes, then each container. */
export function dirtyChart(record: MigrationRecord): string {
  const passes = record.passes;
  const trackers: TrackerPages[] = [];
  for (const p of passes) for (const t of p.found) if (!trackers.some((k) => k.key === t.key)) trackers.push(t);
  let next = 0;
  const series = trackers.map((t): BarSeries => ({
    name: trackerName(t),
    color: t.kind === 'guest' ? GUEST : t.kind === 'all-ram' ? ALL_RAM : PALETTE[next++ % PALETTE.length]!,
    values: passes.map((p) => p.found.find((f) => f.key === t.key)?.pages),
  }));
  return renderBarChart({
    title: 'Dirty pages found for each pass, by tracker', unit: 'pages', categories: passes.map(passLabel), series,
    format: formatCount, labels: passes.map((p) => formatCount(p.dirtyPages)), clipAt: clipFirst(passes.map((p) => p.dirtyPages)),
  });
}

/** Pages sent per pass (data, and zero pages sent as markers), with the bytes of the pass over each bar. */
export function sentChart(record: MigrationRecord): string {
  const passes = record.passes;
  return renderBarChart({
    title: 'Pages sent per pass (bytes on the stream over each bar)', unit: 'pages', categories: passes.map(passLabel),
    series: [
      { name: 'pages sent with data', color: GUEST, values: passes.map((p) => p.pagesSent) },
      { name: 'zero pages (markers only)', color: ZERO, values: passes.map((p) => p.zeroPages) },
    ],
    format: formatCount, labels: passes.map((p) => formatBytes(p.bytesSent)), clipAt: clipFirst(passes.map((p) => p.pagesSent + p.zeroPages)),
  });
}

/** Stream throughput each pass measured. */
export function throughputChart(record: MigrationRecord): string {
  const passes = record.passes;
  // In MiB/s, so that the axis gets round ticks.
  return renderBarChart({
    title: 'Throughput per pass', unit: 'MiB/s', categories: passes.map(passLabel),
    series: [{ name: 'throughput', color: PALETTE[1]!, values: passes.map((p) => p.throughput / MiB) }],
    format: (v) => `${formatCount(v)} MiB/s`, labels: passes.map((p) => formatRate(p.throughput)),
  });
}

/**
 * The expected downtime at each decision (switch over, or send another pass), against the
 * limit, and the downtime the switchover really took beside the last estimate.
 */
export function downtimeChart(record: MigrationRecord, downtimeLimitMs?: number): string {
  const passes = record.passes;
  const measured = passes.map((p) => (p.phase === 'stop-copy' ? record.outcome?.downtimeMs : undefined));
  return renderBarChart({
    title: 'Expected downtime at each decision', unit: 'ms', categories: passes.map(passLabel), layout: 'grouped',
    series: [
      { name: 'expected downtime at the decision', color: PALETTE[0]!, values: passes.map((p) => p.expectedDowntimeMs) },
      { name: 'measured downtime', color: MEASURED, values: measured },
    ],
    format: formatMs,
    labels: passes.map((p) => (p.expectedDowntimeMs === undefined ? 'first pass' : formatMs(p.expectedDowntimeMs))),
    reference: downtimeLimitMs === undefined ? undefined : { value: downtimeLimitMs, label: `limit ${formatMs(downtimeLimitMs)}` },
  });
}
