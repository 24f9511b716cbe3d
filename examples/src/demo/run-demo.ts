// The demo from its command line to its exit status: one migration (or one per strategy with
// --compare) of the demo VM between two VMMs on simulated hosts, shown as it happens, verified,
// and written up as text, JSON and an HTML report.

import { setTimeout as sleep } from 'node:timers/promises';
import { planMigration, type MigrationPlan } from '@vmmkit/migration';
import { allPlugins } from '../guest/demo-vm.js';
import type { ReportRun } from '../report/migration-record.js';
import { DEMO_STRATEGIES, DEMO_USAGE, DemoUsageError, parseDemoArgs, type DemoOptions, type DemoStrategy } from './demo-args.js';
import { processIo, type DemoIo } from './demo-io.js';
import { migrateDemoPair } from './demo-migration.js';
import { createDemoPair, type DemoPair } from './demo-pair.js';
import { writeDemoReport, reportPathProblem } from './demo-report.js';
import { demoScenario } from './demo-scenario.js';
import { comparisonText, containerNames, introText, planText, resultText } from './demo-text.js';
import { ProgressView } from './progress-view.js';

// The guest runs a moment before the migration starts, so that the NICs' rings are busy.
const WARM_UP_MS = 250;

/** Exit statuses: verified, failed (migration or verification), bad flags. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

/**
 * Run the demo with `argv` (the flags, without node and the script) and return the exit status.
 * Writes the text (or JSON) to `io.out` and errors to `io.err`; never exits the process.
 */
export async function runDemo(argv: readonly string[], io: DemoIo = processIo()): Promise<number> {
  let options: DemoOptions;
  try {
    options = parseDemoArgs(argv);
  } catch (e) {
    if (!(e instanceof DemoUsageError)) throw e;
    io.err.write(`demo: ${e.message}\n`);
    return EXIT.usage;
  }
  if (options.help) {
    io.out.write(`${DEMO_USAGE}\n`);
    return EXIT.ok;
  }
  const problem = options.report === undefined ? undefined : reportPathProblem(options.report);
  if (problem) {
    io.err.write(`demo: --report: ${problem}\n`);
    return EXIT.usage;
  }
  const runs: ReportRun[] = [];
  const strategies = options.compare ? DEMO_STRATEGIES : [options.strategy];
  for (const [i, strategy] of strategies.entries()) {
    try {
      runs.push(await runOne(strategy, options, io, i === 0));
    } catch (e) {
      io.err.write(`demo: the ${strategy} migration failed: ${describe(e)}\n`);
      return EXIT.failed;
    }
  }
  const ok = runs.every((r) => r.verification?.ok);
  if (options.compare && !options.json) io.out.write(`\n${comparisonText(runs)}`);
  if (options.report !== undefined) {
    await writeDemoReport(options.report, options, runs);
    if (!options.json) io.out.write(`\nReport written to ${options.report}\n`);
  }
  if (options.json) io.out.write(`${JSON.stringify({ ok, options, runs }, null, 2)}\n`);
  return ok ? EXIT.ok : EXIT.failed;
}

/** One migration of a fresh pair set up for `strategy`. @throws when blocked or when it fails. */
async function runOne(strategy: DemoStrategy, options: DemoOptions, io: DemoIo, first: boolean): Promise<ReportRun> {
  const pair = await createDemoPair(demoScenario(strategy), options.memoryMiB);
  try {
    const plan = planMigration(pair.source.vm.vmm);
    const names = containerNames(plan);
    const say = (text: string): void => {
      if (!options.json) io.out.write(text);
    };
    if (options.compare) say(`${first ? '' : '\n'}━━ strategy: ${strategy} ━━\n`);
    say(`${first ? 'vmmkit demo: live migration of a VM with two assigned NICs, between two VMMs on simulated hosts\n' : ''}`);
    say(`${introText(pair, plan, allPlugins().map((p) => p.name))}\n${planText(plan, names)}\n`);
    await pair.activity.start();
    await sleep(WARM_UP_MS);
    say(`Migrating to the destination VMM (incoming), downtime limit ${options.downtimeLimitMs} ms, `
      + `max bandwidth ${options.maxBandwidthMiBs} MiB/s, at most ${options.maxIterations} precopy iterations\n`);
    const run = await migrateWithView(pair, plan, options, io, strategy);
    say(`\n${resultText(run, names, options.downtimeLimitMs)}`);
    return run;
  } finally {
    await pair.close();
  }
}

async function migrateWithView(pair: DemoPair, plan: MigrationPlan, options: DemoOptions, io: DemoIo, label: string): Promise<ReportRun> {
  const maxBandwidth = options.maxBandwidthMiBs * 2 ** 20;
  const view = options.json ? undefined : new ProgressView(io.out, {
    downtimeLimitMs: options.downtimeLimitMs, bandwidth: maxBandwidth, firstPassBytes: pair.activity.guest.workingSetBytes, names: containerNames(plan),
  });
  const detach = view?.attach(pair.source.vm.vmm);
  try {
    return await migrateDemoPair(pair, { downtimeLimitMs: options.downtimeLimitMs, maxBandwidth, maxIterations: options.maxIterations }, label);
  } finally {
    detach?.();
  }
}

// vmmkit's errors name what failed and include their cause's message already.
function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
