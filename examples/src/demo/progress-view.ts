// The migration as it happens, on the terminal: for each iteration what the dirty syncs found
// and by which tracker, the expected downtime, and a bar for the pass being sent, redrawn in
// place on a TTY; then the switchover and the stop-copy pass. Fed by the source VMM's events.

import type { Vmm, VmmEvents } from '@vmmkit/core';
import { STREAM_PAGE_SIZE } from '@vmmkit/migration';
import { countOf, formatBytes, formatCount, formatMs, formatRate } from '../report/format.js';
import type { PassRecord, TrackerPages } from '../report/migration-record.js';
import { RECORDED_EVENTS, initialRecorderState, recordEvent, type RecordedEvent, type RecorderState } from '../report/record-event.js';
import type { DemoOutput } from './demo-io.js';

export interface ProgressViewOptions {
  readonly downtimeLimitMs: number;
  /** Bytes per second the stream is limited to: the first pass's pace. */
  readonly bandwidth: number;
  /** Bytes of data (non-zero pages) the first pass sends. */
  readonly firstPassBytes: number;
  /** Names to show for containers (by container id). */
  readonly names: ReadonlyMap<string, string>;
}

const BAR = 24;
const REDRAW_MS = 100;

export class ProgressView {
  #state: RecorderState = initialRecorderState('');
  #timer: NodeJS.Timeout | undefined;
  #passStarted = 0;
  #passEstimateMs = 0;

  constructor(private readonly out: DemoOutput, private readonly options: ProgressViewOptions) {}

  /** Follow `vmm`'s next outgoing migration; returns the function that stops following it. */
  attach(vmm: Vmm): () => void {
    const offs = RECORDED_EVENTS.map((name) => {
      const listener = (payload: unknown): void => this.#on({ name, payload } as RecordedEvent);
      vmm.events.on(name, listener);
      return () => vmm.events.off(name, listener);
    });
    const onIteration = (e: { iteration: number }): void => {
      if (e.iteration === 1) this.#firstIteration(vmm);
    };
    vmm.events.on('migration:iteration', onIteration);
    return () => {
      this.#stopBar();
      vmm.events.off('migration:iteration', onIteration);
      for (const off of offs) off();
    };
  }

  #on(event: RecordedEvent): void {
    this.#state = recordEvent(this.#state, event);
    switch (event.name) {
      case 'migration:dirty-sync':
        if (event.payload.phase === 'precopy') this.#synced(event.payload.iteration);
        break;
      case 'migration:switchover':
        this.#switchover(event.payload);
        break;
      case 'migration:progress':
        this.#passDone(this.#state.record.passes.at(-1)!);
        break;
      case 'migration:completed':
        this.#stopBar();
        break;
    }
  }

  #firstIteration(vmm: Vmm): void {
    const pages = vmm.memory.blocks.reduce((n, b) => n + b.pages, 0);
    this.#line(`  iteration 1   all of RAM is dirty: ${formatCount(pages)} pages (the first pass sends everything, zero pages as markers)`);
    this.#startBar(1, (this.options.firstPassBytes / this.options.bandwidth) * 1000);
  }

  /** A precopy sync found pages: say what and who, then either a pass or the switchover follows. */
  #synced(iteration: number): void {
    const pending = this.#state.pending;
    const found = pending.found.reduce((n, t) => n + t.pages, 0);
    const expected = pending.decisionMs;
    const trackers = pending.found.map((t) => `${this.#name(t)} ${formatCount(t.pages)}`).join(' · ');
    this.#line(`  iteration ${String(iteration).padEnd(3)} found ${formatCount(found)} dirty pages: ${trackers}`);
    const limit = this.options.downtimeLimitMs;
    const verdict = expected === undefined ? '' : expected <= limit ? ` ≤ limit ${formatMs(limit)}` : ` > limit ${formatMs(limit)}`;
    this.#line(`                expected downtime ${expected === undefined ? '?' : formatMs(expected)}${verdict}`);
    this.#startBar(iteration, this.#estimateMs(pending.dirtyPages));
  }

  #switchover(e: Pick<VmmEvents['migration:switchover'][0], 'converged' | 'expectedDowntimeMs' | 'dirtyPages'>): void {
    this.#stopBar();
    const passes = this.#state.record.passes.length;
    const limit = formatMs(this.options.downtimeLimitMs);
    this.#line(e.converged
      ? `  switchover    expected downtime ${formatMs(e.expectedDowntimeMs)} ≤ limit ${limit}: converged after ${countOf(passes, 'pass', 'passes')}`
      : `  switchover    expected downtime ${formatMs(e.expectedDowntimeMs)} > limit ${limit} after ${countOf(passes, 'pass', 'passes')}: switching over anyway (did not converge)`);
    this.#line('                guest paused, NICs stopped (STOP_COPY): the last dirty pages and device state go out');
    this.#startBar(0, this.#estimateMs(e.dirtyPages));
  }

  /**
   * How long sending `dirtyPages` should take: the pages that hold data, at the last pass's
   * throughput. Which dirty pages are zero (sent as markers, nearly free) is not known before the
   * pass: the first pass's data pages bound the second, and later passes keep the previous one's
   * ratio of data pages (type1 and all-dirty report every page, most of them zero).
   */
  #estimateMs(dirtyPages: number): number {
    const passes = this.#state.record.passes;
    const last = passes.at(-1);
    if (!last || !(last.throughput > 0)) return 0;
    const dataPages = passes.length === 1
      ? Math.min(dirtyPages, last.pagesSent)
      : (dirtyPages * last.pagesSent) / Math.max(1, last.dirtyPages);
    return ((dataPages * STREAM_PAGE_SIZE) / last.throughput) * 1000;
  }

  #passDone(pass: PassRecord): void {
    this.#stopBar();
    const name = pass.phase === 'stop-copy' ? 'stop-copy' : `pass ${pass.iteration}`;
    const seconds = pass.throughput > 0 ? pass.bytesSent / pass.throughput : 0;
    this.#line(`    ${name.padEnd(10)}${bar(1)} 100%  ${formatCount(pass.pagesSent)} pages + ${formatCount(pass.zeroPages)} zero`
      + `  ${formatBytes(pass.bytesSent)} in ${seconds.toFixed(2)} s  ${formatRate(pass.throughput)}`);
  }

  /** Show the bar of the pass about to be sent, expected to take `estimateMs` (redrawn on a TTY only). */
  #startBar(iteration: number, estimateMs: number): void {
    this.#stopBar();
    this.#passStarted = performance.now();
    this.#passEstimateMs = Math.max(estimateMs, 1);
    if (!this.out.isTTY) return;
    const name = iteration === 0 ? 'stop-copy' : `pass ${iteration}`;
    const draw = (): void => {
      const elapsed = performance.now() - this.#passStarted;
      // An estimate from the pace of the last pass: it never claims the pass is done.
      const fraction = Math.min(elapsed / this.#passEstimateMs, 0.99);
      this.out.write(`\r\x1b[2K    ${name.padEnd(10)}${bar(fraction)} ${String(Math.floor(fraction * 100)).padStart(3)}%  ${(elapsed / 1000).toFixed(1)} s`);
    };
    draw();
    this.#timer = setInterval(draw, REDRAW_MS);
    this.#timer.unref();
  }

  #stopBar(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.out.write('\r\x1b[2K');
  }

  #line(text: string): void {
    this.out.write(`${text}\n`);
  }

  #name(t: TrackerPages): string {
    if (t.kind !== 'container') return t.label;
    return `${this.options.names.get(t.label) ?? t.label} (${t.strategy})`;
  }
}

function bar(fraction: number): string {
  const full = Math.round(fraction * BAR);
  return `${'█'.repeat(full)}${'░'.repeat(BAR - full)}`;
}
