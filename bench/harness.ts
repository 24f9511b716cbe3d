// The benchmark harness: a subject and its baseline are timed in alternating trials in the same
// run, and the result is the ratio of their median throughputs, never an absolute time.

import { accessSync, constants } from 'node:fs';

/** One line of the results table. */
export interface Row {
  readonly benchmark: string;
  readonly case: string;
  /** Subject throughput over baseline throughput (higher is better; 1 = as fast as the baseline). */
  readonly ratio: number;
  readonly baseline: string;
  /** Why the row could not be measured (e.g. no C compiler); `ratio` is then NaN. */
  readonly skipped?: string;
  readonly note?: string;
}

/** A benchmark: named, producing rows. */
export interface Benchmark {
  readonly name: string;
  run(): Promise<Row[]> | Row[];
}

const now = (): bigint => process.hrtime.bigint();
/** CPU time of this process in ms (user + system). */
const cpuMs = (): number => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};

/** The median of `xs` (the upper one of an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Why KVM benchmarks cannot run here, or undefined when /dev/kvm is usable. */
export function kvmMissing(): string | undefined {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return undefined;
  } catch {
    return '/dev/kvm is not usable here';
  }
}

/**
 * Time `subject` and `baseline` in alternating trials (after a warm-up of each) and return the
 * ratio of baseline time to subject time per unit of work: >1 means the subject is faster. Both
 * run on this thread, so the time is the process's CPU time: other load on a shared machine
 * (which stretches wall time by whole scheduler slices) does not count against either.
 * `prepare` runs before each trial of the subject, `prepareBaseline` before each of the baseline,
 * outside the timing.
 */
export function compare(options: {
  trials?: number;
  baseline: () => void;
  subject: () => void;
  prepare?: () => void;
  prepareBaseline?: () => void;
}): { ratio: number; baselineMs: number; subjectMs: number } {
  const trials = options.trials ?? 15;
  const timeOne = (fn: () => void, prepare?: () => void): number => {
    prepare?.();
    const t = cpuMs();
    fn();
    return cpuMs() - t;
  };
  timeOne(options.baseline, options.prepareBaseline);
  timeOne(options.subject, options.prepare);
  const base: number[] = [];
  const subj: number[] = [];
  for (let i = 0; i < trials; i++) {
    base.push(timeOne(options.baseline, options.prepareBaseline));
    subj.push(timeOne(options.subject, options.prepare));
  }
  const baselineMs = median(base);
  const subjectMs = median(subj);
  return { ratio: baselineMs / subjectMs, baselineMs, subjectMs };
}

/**
 * `compare` for asynchronous work (streams, sockets): `subject` and `baseline` are awaited in
 * alternating trials after a warm-up of each, and `prepare` is awaited before each subject trial,
 * outside the timing.
 */
export async function compareAsync(options: {
  trials?: number;
  baseline: () => Promise<void>;
  subject: () => Promise<void>;
  prepare?: () => Promise<void> | void;
}): Promise<{ ratio: number; baselineMs: number; subjectMs: number }> {
  const trials = options.trials ?? 15;
  const timeOne = async (fn: () => Promise<void>, prepare?: () => Promise<void> | void): Promise<number> => {
    await prepare?.();
    const t = now();
    await fn();
    return Number(now() - t) / 1e6;
  };
  await timeOne(options.baseline);
  await timeOne(options.subject, options.prepare);
  const base: number[] = [];
  const subj: number[] = [];
  for (let i = 0; i < trials; i++) {
    base.push(await timeOne(options.baseline));
    subj.push(await timeOne(options.subject, options.prepare));
  }
  const baselineMs = median(base);
  const subjectMs = median(subj);
  return { ratio: baselineMs / subjectMs, baselineMs, subjectMs };
}

/** Print rows as an aligned table. */
export function printTable(rows: readonly Row[]): void {
  const header = ['benchmark', 'case', 'ratio', 'baseline (same run)', 'note'];
  const lines = rows.map((r) => [r.benchmark, r.case, r.skipped ? 'skipped' : `${r.ratio.toFixed(2)}x`, r.baseline, r.skipped ?? r.note ?? '']);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cols: string[]): string => cols.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  console.log(fmt(header));
  console.log(fmt(widths.map((w) => '-'.repeat(w))));
  for (const l of lines) console.log(fmt(l));
}
