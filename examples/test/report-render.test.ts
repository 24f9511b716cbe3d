// The report renderer: a self-contained page, an SVG per chart that parses as XML, a bar per
// pass, every name escaped, and the comparison of runs side by side.

import { describe, expect, it } from 'vitest';
import type { MigrationRecord, MigrationReport, PassRecord, ReportRun } from '../src/report/migration-record.js';
import { renderReport } from '../src/report/render-report.js';
import { dirtyChart } from '../src/report/run-charts.js';
import { svgElements, xmlProblems } from './report-xml.js';

const EVIL = `<script>alert("x")</script> & 'co'`;

function pass(iteration: number, phase: PassRecord['phase'], pages: number, expectedDowntimeMs?: number): PassRecord {
  return {
    iteration, phase, dirtyPages: pages, expectedDowntimeMs, expectedAfterMs: 10, pagesSent: pages, zeroPages: iteration === 1 ? 3 * pages : 0,
    deviceBytes: 4096, bytesSent: pages * 4104, throughput: 32 << 20, syncMs: 0.5,
    found: iteration === 1
      ? [{ key: 'all-ram', kind: 'all-ram', label: 'all of RAM (first pass)', pages }]
      : [
        { key: 'guest', kind: 'guest', label: 'guest writes', pages: pages - 100 },
        { key: `container:${EVIL}`, kind: 'container', label: EVIL, strategy: 'device', pages: 100 },
      ],
  };
}

function run(label: string, passes: PassRecord[], ok = true): ReportRun {
  const record: MigrationRecord = {
    label, blockers: [], warnings: [EVIL], passes,
    containers: [{ container: EVIL, backend: 'vfio-iommu-legacy', strategy: 'device', reason: `because ${EVIL}`, devices: ['0000:00:05.0'] }],
    outcome: {
      iterations: passes.length - 1, converged: true, pagesSent: 1000, zeroPages: 3000, deviceBytes: 8192, bytesSent: 5 << 20,
      downtimeMs: 120, expectedDowntimeMs: 110, durationMs: 900, throughput: 30 << 20,
      containers: [{ container: EVIL, backend: 'vfio-iommu-legacy', strategy: 'device', devices: ['0000:00:05.0'], dirtyPages: 300 }],
    },
  };
  const side = { source: 'aa'.repeat(32), destination: (ok ? 'aa' : 'bb').repeat(32) };
  return { record, verification: { ram: { ...side, equal: ok }, devices: [{ name: EVIL, host: '0000:00:05.0', bytes: 100, ...side, equal: ok }], ok } };
}

const PASSES = [pass(1, 'precopy', 4096), pass(2, 'precopy', 900, 800), pass(3, 'precopy', 400, 350), pass(4, 'stop-copy', 200, 110)];

function report(runs: ReportRun[]): MigrationReport {
  return { title: `report ${EVIL}`, generatedAt: 'now', settings: [['guest', EVIL]], downtimeLimitMs: 300, runs };
}

describe('the report page', () => {
  it('has an SVG per chart, each well-formed XML, and nothing external', () => {
    const html = renderReport(report([run('device', PASSES)]));
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    const svgs = svgElements(html);
    expect(svgs).toHaveLength(4);
    for (const svg of svgs) expect(xmlProblems(svg)).toEqual([]);
    expect(html).not.toMatch(/<script|<link|src=|href=|@import|url\(/i);
  });

  it('draws a bar per pass', () => {
    const svg = dirtyChart(run('device', PASSES).record);
    expect(svg.match(/<g class="bar"/g)).toHaveLength(PASSES.length);
    // The first pass is all of RAM; later ones stack the guest's writes and the container's.
    expect(svg).toContain('data-category="1"');
    expect(svg).toContain('data-category="stop-copy"');
    expect(svg.match(/<rect [^>]*><title>/g)).toHaveLength(1 + 2 * (PASSES.length - 1));
    // All of RAM dwarfs the later passes: its bar is cut, with a break mark, to keep them readable.
    expect(svg.match(/class="break"/g)).toHaveLength(1);
  });

  it('escapes every name it shows', () => {
    const html = renderReport(report([run('device', PASSES), run(EVIL, PASSES)]));
    expect(html).not.toContain(EVIL);
    expect(html).not.toContain('<script>');
    expect(html).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39;');
  });

  it('compares several runs side by side', () => {
    const html = renderReport(report([run('device', PASSES), run('all-dirty', PASSES.slice(0, 2)), run('broken', PASSES, false)]));
    const svgs = svgElements(html);
    // Four comparison charts, then four per run.
    expect(svgs).toHaveLength(4 + 3 * 4);
    for (const svg of svgs.slice(0, 4)) expect(svg.match(/<g class="bar"/g)).toHaveLength(3);
    for (const svg of svgs) expect(xmlProblems(svg)).toEqual([]);
    expect(html).toContain('Strategies compared on the same workload');
    expect(html).toMatch(/<th>all-dirty<\/th>/);
    expect(html).toContain('NO: destination differs');
  });
});

describe('the XML check itself', () => {
  it.for([
    ['<a><b></a>', /closes/],
    ['<a>x & y</a>', /stray &/],
    ['<a x=1></a>', /malformed attributes/],
    ['<a x="<"></a>', /malformed attributes/],
    ['<a>', /unclosed/],
  ] as const)('rejects %s', ([xml, problem]) => {
    expect(xmlProblems(xml).join('\n')).toMatch(problem);
  });

  it('accepts entities, self-closing tags and nesting', () => {
    expect(xmlProblems('<svg x="a &amp; b"><g><rect/><text>1 &lt; 2 &#39;</text></g></svg>')).toEqual([]);
  });
});
