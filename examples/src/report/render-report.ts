// The migration report as one self-contained HTML page: inline CSS and SVG, no scripts, no
// external assets. A comparison of strategies comes first when there are several runs, then
// each run: its plan, its charts pass by pass, the passes in numbers and its verified result.

import { renderCompareCharts } from './compare-charts.js';
import { escapeXml } from './escape.js';
import type { MigrationReport, ReportRun } from './migration-record.js';
import { compareTable, htmlTable, passTable, planTable, resultTable } from './report-tables.js';
import { renderRunCharts } from './run-charts.js';

const STYLE = `
body { font: 14px/1.45 system-ui, sans-serif; color: #222; margin: 2rem auto; max-width: 1340px; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; } h3 { margin-top: 1.4rem; }
.meta { color: #666; }
table { border-collapse: collapse; margin: .6rem 0; } th, td { border: 1px solid #ddd; padding: .25rem .55rem; text-align: left; vertical-align: top; }
thead th { background: #f4f4f4; } tbody th { background: #fafafa; font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; } .good { color: #1a7f37; font-weight: 600; } .bad { color: #c62828; font-weight: 700; }
.strategy { font-weight: 600; } .charts { display: flex; flex-wrap: wrap; gap: 1rem; }
.chart { background: #fff; border: 1px solid #e4e4e4; border-radius: 4px; }
.chart text { font: 12px system-ui, sans-serif; fill: #333; } .chart .title { font-size: 13px; font-weight: 600; }
.chart .tick { fill: #777; }
.chart .value { font-size: 11px; fill: #444; }
.note { color: #555; max-width: 70rem; }
`;

/** The report page for `report`. Every text it shows is escaped. */
export function renderReport(report: MigrationReport): string {
  const compare = report.runs.length > 1 ? renderComparison(report) : '';
  const runs = report.runs.map((run) => renderRun(run, report.downtimeLimitMs, report.runs.length > 1)).join('');
  return '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
    + `<meta name="viewport" content="width=device-width, initial-scale=1"><title>${escapeXml(report.title)}</title><style>${STYLE}</style></head><body>`
    + `<h1>${escapeXml(report.title)}</h1><p class="meta">${escapeXml(report.generatedAt)}</p>`
    + `<h2>Settings</h2>${htmlTable([], report.settings.map(([k, v]) => [k, v]), true)}`
    + compare + runs
    + '</body></html>\n';
}

function renderComparison(report: MigrationReport): string {
  return '<h2>Strategies compared on the same workload</h2>'
    + '<p class="note">Each run migrates the same guest doing the same work, with the VFIO containers\' dirty tracking set up for one strategy. '
    + 'Device DMA logging reports the pages the devices wrote; type1\'s IOMMU tracking cannot see device writes and reports every mapped page; '
    + 'all-dirty counts every mapped page at every sync.</p>'
    + compareTable(report.runs)
    + `<div class="charts">${renderCompareCharts(report.runs, report.downtimeLimitMs).join('')}</div>`;
}

function renderRun(run: ReportRun, downtimeLimitMs: number | undefined, several: boolean): string {
  const record = run.record;
  const heading = several ? `Run: ${record.label}` : 'The migration';
  const blockers = record.blockers.length ? `<p class="bad">Blockers: ${escapeXml(record.blockers.join('; '))}</p>` : '';
  const warnings = record.warnings.length ? `<p class="note">Warnings: ${escapeXml(record.warnings.join('; '))}</p>` : '';
  return `<section><h2>${escapeXml(heading)}</h2>`
    + `<h3>Plan</h3>${planTable(record)}${blockers}${warnings}`
    + `<h3>Result</h3>${resultTable(run, downtimeLimitMs)}`
    + `<h3>Pass by pass</h3><div class="charts">${renderRunCharts(record, downtimeLimitMs).join('')}</div>`
    + '<p class="note">A pass begins with a dirty sync: the pages the guest wrote and those each container\'s tracker reported '
    + '(a page is counted once, by the first to report it: the guest\'s writes, then the containers in order). '
    + 'The expected downtime is what switching over then would cost; the migration sends another pass while it is above the limit. '
    + 'The first pass sends all of RAM; the stop-copy pass runs with the guest paused.</p>'
    + passTable(record)
    + '</section>';
}
