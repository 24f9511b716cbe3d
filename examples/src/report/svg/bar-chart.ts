// A bar chart as a self-contained SVG element: one bar (or group of bars) per category, series
// stacked or side by side, a value axis, an optional reference line (a limit) and a legend.
// Fonts come from the page's CSS classes; colours and strokes are inline so that a saved SVG keeps them.

import { escapeXml } from '../escape.js';
import { niceTicks, renderValueAxis, yOf, type PlotArea } from './axis.js';

/** One series: a value per category (undefined: nothing to draw there). */
export interface BarSeries {
  readonly name: string;
  readonly color: string;
  readonly values: readonly (number | undefined)[];
}

export interface BarChartSpec {
  readonly title: string;
  /** What the values are (the chart's description; tick labels carry their unit through `format`). */
  readonly unit: string;
  readonly categories: readonly string[];
  readonly series: readonly BarSeries[];
  /** Stack the series into one bar per category (default), or put them side by side. */
  readonly layout?: 'stacked' | 'grouped';
  /** A value for ticks and tooltips. */
  readonly format: (value: number) => string;
  /** A label over each category's bar. */
  readonly labels?: readonly (string | undefined)[];
  /** A horizontal line across the plot, such as a limit. */
  readonly reference?: { readonly value: number; readonly label: string };
  /**
   * The top of the value axis when a bar dwarfs the others: taller bars are cut there, with a
   * break mark (their labels still say their value).
   */
  readonly clipAt?: number;
  readonly width?: number;
}

const HEIGHT = 220;
const MARGIN = { left: 72, right: 16, top: 44, bottom: 30 };
const LEGEND_LINE = 18;
// Legend text is laid out before the browser measures it: an average glyph width at 12px.
const CHAR_WIDTH = 6.6;
const REFERENCE_STROKE = 'stroke="#c62828" stroke-width="1.5" stroke-dasharray="5 4"';

/** The chart as an `<svg>` element: a `<g class="bar">` per category, a `<rect>` with a tooltip per value. */
export function renderBarChart(spec: BarChartSpec): string {
  const width = spec.width ?? 640;
  const legend = layoutLegend(spec.series, spec.reference?.label, width - MARGIN.left - MARGIN.right);
  const height = HEIGHT + legend.height;
  const stacked = (spec.layout ?? 'stacked') === 'stacked';
  const tops = spec.categories.map((_, i) => {
    const values = spec.series.map((s) => s.values[i] ?? 0);
    return stacked ? values.reduce((a, b) => a + b, 0) : Math.max(0, ...values);
  });
  const highest = Math.max(0, ...tops, spec.reference?.value ?? 0);
  const ticks = niceTicks(Math.min(highest, spec.clipAt ?? Infinity) * 1.08);
  const plot: PlotArea = {
    left: MARGIN.left, top: MARGIN.top, width: width - MARGIN.left - MARGIN.right, height: HEIGHT - MARGIN.top - MARGIN.bottom, max: ticks[ticks.length - 1]!,
  };
  const band = plot.width / Math.max(1, spec.categories.length);
  const bars = spec.categories.map((category, i) => renderCategory(spec, plot, band, i, category, stacked)).join('');
  const title = escapeXml(spec.title);
  return `<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img">`
    + `<title>${title}</title><desc>${escapeXml(`values in ${spec.unit}`)}</desc><text class="title" x="${MARGIN.left}" y="18">${title}</text>`
    + renderValueAxis(plot, ticks, spec.format)
    + bars
    + (spec.reference ? renderReference(plot, spec.reference) : '')
    + `<line class="baseline" stroke="#888" x1="${plot.left}" x2="${plot.left + plot.width}" y1="${plot.top + plot.height}" y2="${plot.top + plot.height}"/>`
    + legend.render(MARGIN.left, HEIGHT)
    + '</svg>';
}

/** One category: its bar(s), its name under the axis and its label over the bar. */
function renderCategory(spec: BarChartSpec, plot: PlotArea, band: number, i: number, category: string, stacked: boolean): string {
  const barWidth = Math.min(56, band * 0.64);
  const x0 = plot.left + band * i + (band - barWidth) / 2;
  const slots = stacked ? 1 : Math.max(1, spec.series.length);
  const slotWidth = barWidth / slots;
  let base = 0;
  const rects = spec.series.map((s, k) => {
    const value = s.values[i];
    if (value === undefined || value <= 0) return '';
    const bottom = stacked ? base : 0;
    if (stacked) base += value;
    const x = stacked ? x0 : x0 + k * slotWidth;
    const y = Math.max(plot.top, yOf(plot, bottom + value));
    const h = Math.max(0, yOf(plot, bottom) - y);
    const tip = escapeXml(`${category}: ${s.name} ${spec.format(value)}`);
    const w = slotWidth - (stacked ? 0 : 1);
    return `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${w.toFixed(1)}" height="${Math.max(h, 0.5).toFixed(1)}" fill="${escapeXml(s.color)}">`
      + `<title>${tip}</title></rect>`;
  });
  const top = spec.series.reduce((n, s) => (stacked ? n + (s.values[i] ?? 0) : Math.max(n, s.values[i] ?? 0)), 0);
  const clipped = top > plot.max;
  const centre = (x0 + barWidth / 2).toFixed(1);
  const label = spec.labels?.[i];
  const labelY = (Math.max(plot.top, yOf(plot, top)) - 4).toFixed(1);
  const over = label ? `<text class="value" x="${centre}" y="${labelY}" text-anchor="middle">${escapeXml(label)}</text>` : '';
  const cut = clipped
    ? `<path class="break" d="M${x0.toFixed(1)} ${plot.top + 12} l${barWidth.toFixed(1)} -6 M${x0.toFixed(1)} ${plot.top + 18} l${barWidth.toFixed(1)} -6" stroke="#fff" stroke-width="3"/>`
    : '';
  const under = `<text class="category" x="${centre}" y="${plot.top + plot.height + 16}" text-anchor="middle">${escapeXml(category)}</text>`;
  return `<g class="bar" data-category="${escapeXml(category)}">${rects.join('')}${cut}${over}${under}</g>`;
}

// The reference line is named in the legend: over the plot its label would collide with bars.
function renderReference(plot: PlotArea, reference: { readonly value: number; readonly label: string }): string {
  const y = yOf(plot, reference.value).toFixed(1);
  return `<g class="reference"><line x1="${plot.left}" x2="${plot.left + plot.width}" y1="${y}" y2="${y}" ${REFERENCE_STROKE}>`
    + `<title>${escapeXml(reference.label)}</title></line></g>`;
}

/** A legend entry: a series' swatch, or the reference line's dash. */
interface LegendEntry {
  readonly name: string;
  readonly color?: string;
}

/**
 * The legend's entries in rows that fit `width`, and its height: the series when there are
 * several (one names itself in the title), and the reference line.
 */
function layoutLegend(series: readonly BarSeries[], reference: string | undefined, width: number): { height: number; render(left: number, top: number): string } {
  const entries: LegendEntry[] = [...(series.length > 1 ? series : []), ...(reference === undefined ? [] : [{ name: reference }])];
  const placed: { e: LegendEntry; x: number; row: number }[] = [];
  let x = 0;
  let row = 0;
  for (const e of entries) {
    const w = 14 + e.name.length * CHAR_WIDTH + 18;
    if (x > 0 && x + w > width) {
      row++;
      x = 0;
    }
    placed.push({ e, x, row });
    x += w;
  }
  const rows = entries.length > 0 ? row + 1 : 0;
  const swatch = (e: LegendEntry, at: number, y: number): string => e.color === undefined
    ? `<line class="reference-key" x1="${at}" x2="${at + 10}" y1="${y + 5}" y2="${y + 5}" ${REFERENCE_STROKE}/>`
    : `<rect x="${at}" y="${y}" width="10" height="10" fill="${escapeXml(e.color)}"/>`;
  return {
    height: rows * LEGEND_LINE,
    render: (left, top) => rows === 0 ? '' : `<g class="legend">${placed.map(({ e, x: at, row: r }) => {
      const y = top + r * LEGEND_LINE;
      return `${swatch(e, left + at, y)}<text x="${left + at + 14}" y="${y + 9}">${escapeXml(e.name)}</text>`;
    }).join('')}</g>`,
  };
}
