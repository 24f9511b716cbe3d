// The report's HTML tables: the migration plan, the passes in numbers, the final result with its
// verification, and the comparison of runs. Every cell's text is escaped here.

import { escapeXml } from './escape.js';
import { countOf, formatBytes, formatCount, formatMs, formatRate } from './format.js';
import type { MigrationRecord, ReportRun, VerificationRecord } from './migration-record.js';
import { passLabel, trackerName } from './run-charts.js';

/** A cell: text, or text with a class (`good`, `bad`, `num`). */
export type Cell = string | { readonly text: string; readonly cls: string };

/** An HTML table; `header` cells become `<th>`, and the first cell of each row too when `rowHeaders`. */
export function htmlTable(header: readonly string[], rows: readonly (readonly Cell[])[], rowHeaders = false): string {
  const cell = (c: Cell, tag: string): string =>
    typeof c === 'string' ? `<${tag}>${escapeXml(c)}</${tag}>` : `<${tag} class="${escapeXml(c.cls)}">${escapeXml(c.text)}</${tag}>`;
  const head = header.length ? `<thead><tr>${header.map((h) => cell(h, 'th')).join('')}</tr></thead>` : '';
  const body = rows.map((r) => `<tr>${r.map((c, i) => cell(c, rowHeaders && i === 0 ? 'th' : 'td')).join('')}</tr>`).join('');
  return `<table>${head}<tbody>${body}</tbody></table>`;
}

const num = (text: string): Cell => ({ text, cls: 'num' });
const verdict = (ok: boolean, yes: string, no: string): Cell => ({ text: ok ? yes : no, cls: ok ? 'good' : 'bad' });

/** Each container of the plan: backend, strategy, devices and why. */
export function planTable(record: MigrationRecord): string {
  return htmlTable(
    ['container', 'backend', 'strategy', 'devices', 'why'],
    record.containers.map((c) => [c.container, c.backend, { text: c.strategy, cls: `strategy ${c.strategy}` }, c.devices.join(', '), c.reason]),
  );
}

/** Every pass in numbers: what was found by whom, what was sent, how fast. */
export function passTable(record: MigrationRecord): string {
  return htmlTable(
    ['pass', 'dirty pages found', 'by tracker', 'expected downtime', 'pages sent', 'zero pages', 'device bytes', 'bytes', 'throughput', 'sync'],
    record.passes.map((p) => [
      passLabel(p), num(formatCount(p.dirtyPages)), p.found.map((t) => `${trackerName(t)}: ${formatCount(t.pages)}`).join('; '),
      num(p.expectedDowntimeMs === undefined ? '—' : formatMs(p.expectedDowntimeMs)), num(formatCount(p.pagesSent)), num(formatCount(p.zeroPages)),
      num(formatBytes(p.deviceBytes)), num(formatBytes(p.bytesSent)), num(formatRate(p.throughput)), num(formatMs(p.syncMs)),
    ]),
  );
}

/** The final result of one run and its verification, as name/value rows. */
export function resultTable(run: ReportRun, downtimeLimitMs?: number): string {
  const o = run.record.outcome;
  if (!o) return '<p class="bad">The migration did not complete.</p>';
  const limit = downtimeLimitMs === undefined ? '' : `, limit ${formatMs(downtimeLimitMs)}`;
  const rows: Cell[][] = [
    ['verified', run.verification ? verdict(run.verification.ok, 'yes: destination equals source', 'NO: destination differs') : 'not checked'],
    ['converged', verdict(o.converged, 'yes', `no: switched over after ${countOf(o.iterations, 'iteration')}`)],
    ['downtime', `${formatMs(o.downtimeMs)} (expected ${formatMs(o.expectedDowntimeMs)}${limit})`],
    ['precopy iterations', formatCount(o.iterations)],
    ['pages sent', `${formatCount(o.pagesSent)} with data, ${formatCount(o.zeroPages)} zero pages as markers`],
    ['device state', formatBytes(o.deviceBytes)],
    ['bytes on the stream', formatBytes(o.bytesSent)],
    ['duration', `${formatMs(o.durationMs)} at ${formatRate(o.throughput)}`],
    ...o.containers.map((c): Cell[] => [`container ${c.container}`, `${c.backend}: ${c.strategy}, ${formatCount(c.dirtyPages)} dirty pages found`]),
    ...(run.verification ? verificationRows(run.verification) : []),
  ];
  return htmlTable([], rows, true);
}

function verificationRows(v: VerificationRecord): Cell[][] {
  return [
    ['RAM SHA-256', verdict(v.ram.equal, `equal: ${v.ram.source}`, `source ${v.ram.source} ≠ destination ${v.ram.destination}`)],
    ...v.devices.map((d): Cell[] => [
      `${d.name} state`,
      verdict(d.equal, `equal (${formatBytes(d.bytes)}, SHA-256 ${d.source.slice(0, 16)}…)`, `differs: ${d.source.slice(0, 16)}… ≠ ${d.destination.slice(0, 16)}…`),
    ]),
  ];
}

/** The runs side by side: a column per run. */
export function compareTable(runs: readonly ReportRun[]): string {
  const col = (f: (r: ReportRun) => Cell): Cell[] => runs.map(f);
  const o = (f: (x: NonNullable<MigrationRecord['outcome']>) => string): Cell[] => col((r) => (r.record.outcome ? num(f(r.record.outcome)) : '—'));
  return htmlTable(['', ...runs.map((r) => r.record.label)], [
    ['strategies', ...col((r) => r.record.containers.map((c) => `${c.container}: ${c.strategy}`).join('; '))],
    ['pages sent', ...o((x) => formatCount(x.pagesSent))],
    ['zero pages', ...o((x) => formatCount(x.zeroPages))],
    ['bytes on the stream', ...o((x) => formatBytes(x.bytesSent))],
    ['precopy iterations', ...o((x) => formatCount(x.iterations))],
    ['converged', ...col((r) => (r.record.outcome ? verdict(r.record.outcome.converged, 'yes', 'no') : '—'))],
    ['downtime', ...o((x) => formatMs(x.downtimeMs))],
    ['duration', ...o((x) => formatMs(x.durationMs))],
    ['verified', ...col((r) => (r.verification ? verdict(r.verification.ok, 'yes', 'NO') : '—'))],
  ], true);
}
