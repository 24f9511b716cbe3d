// The value axis of a chart: round tick values (1, 2 or 5 times a power of ten) covering the
// data, and the grid lines and labels drawn for them.

import { escapeXml } from '../escape.js';

/** Tick values from 0 to at least `max`: about `count` steps of 1, 2 or 5 × 10^n. */
export function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0) || !Number.isFinite(max)) return [0, 1];
  const rough = max / count;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough)!;
  const ticks = [];
  for (let v = 0; v < max + step / 2; v += step) ticks.push(v);
  if (ticks[ticks.length - 1]! < max) ticks.push(ticks.length * step);
  return ticks;
}

/** Where the plot sits in the SVG, and its value range. */
export interface PlotArea {
  readonly left: number;
  readonly top: number;
  readonly width: number;
  readonly height: number;
  /** The value at the top of the plot. */
  readonly max: number;
}

/** The y coordinate of `value`. */
export function yOf(plot: PlotArea, value: number): number {
  return plot.top + plot.height - (value / plot.max) * plot.height;
}

/** Grid lines and labels for `ticks`. */
export function renderValueAxis(plot: PlotArea, ticks: readonly number[], format: (v: number) => string): string {
  const lines = ticks.map((t) => {
    const y = yOf(plot, t).toFixed(1);
    return `<line class="grid" stroke="#eee" x1="${plot.left}" x2="${plot.left + plot.width}" y1="${y}" y2="${y}"/>`
      + `<text class="tick" x="${plot.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${escapeXml(format(t))}</text>`;
  });
  return `<g class="axis">${lines.join('')}</g>`;
}
