// A differential fuzzing campaign: for each seed, generate a sequence, run it on the reference
// host (Linux) and on the candidate (SimHost), compare the traces, and shrink every divergence to
// a minimal sequence. The report says how many sequences and calls were compared, how often each
// tolerated difference was met, and what diverged.

import type { HostKernel } from '@vmmkit/core';
import { compareTraces, type Divergence } from './compare.js';
import { execute } from './execute.js';
import { generate, type GenerateOptions } from './generate.js';
import type { Sequence, Trace } from './model.js';
import type { FuzzMachine } from './run.js';
import { shrink } from './shrink.js';
import { TOLERATED, type Tolerance } from './tolerated.js';

/** One side of the comparison: where its hosts come from, and where their devices are. */
export interface FuzzSide {
  /** The host for the next sequence (a fresh SimHost, or the one real kernel). */
  host(): HostKernel;
  machine(host: HostKernel): FuzzMachine;
}

export interface CampaignOptions {
  readonly firstSeed: number;
  readonly sequences: number;
  readonly reference: FuzzSide;
  readonly candidate: FuzzSide;
  /** Default: TOLERATED. */
  readonly tolerated?: readonly Tolerance[];
  readonly generate?: GenerateOptions;
  /** Runs the shrinker may spend on one divergence. Default 300. */
  readonly shrinkBudget?: number;
  /** Stop shrinking (but keep counting) after this many divergences. Default 5. */
  readonly maxShrunk?: number;
}

/** A divergence, with the sequence the shrinker reduced it to. */
export interface DivergenceReport {
  readonly seed: number;
  readonly originalLength: number;
  readonly sequence: Sequence;
  readonly divergence: Divergence;
  readonly shrinkTries: number;
}

export interface CampaignReport {
  readonly sequences: number;
  /** Calls compared: steps run on both hosts up to the end or the divergence. */
  readonly calls: number;
  readonly tolerated: Readonly<Record<string, number>>;
  /** How many sequences diverged; the first ones come with their shrunk sequence. */
  readonly diverged: number;
  readonly divergences: readonly DivergenceReport[];
  /** Where the others diverged, unshrunk. */
  readonly more: readonly { readonly seed: number; readonly divergence: Divergence }[];
  readonly elapsedMs: number;
}

/** Run both hosts on `sequence` and compare. */
export function runBoth(options: CampaignOptions, sequence: Sequence): { reference: Trace; candidate: Trace; comparison: ReturnType<typeof compareTraces> } {
  const [refHost, candHost] = [options.reference.host(), options.candidate.host()];
  const reference = execute(refHost, options.reference.machine(refHost), sequence);
  const candidate = execute(candHost, options.candidate.machine(candHost), sequence);
  return { reference, candidate, comparison: compareTraces(sequence, reference, candidate, options.tolerated ?? TOLERATED) };
}

/** Run the campaign. */
export function runCampaign(options: CampaignOptions): CampaignReport {
  const t0 = performance.now();
  const tolerated = new Map<string, number>();
  const divergences: DivergenceReport[] = [];
  const more: { seed: number; divergence: Divergence }[] = [];
  let [calls, diverged] = [0, 0];
  for (let seed = options.firstSeed; seed < options.firstSeed + options.sequences; seed++) {
    const sequence = generate(seed, options.generate);
    const { comparison } = runBoth(options, sequence);
    calls += comparison.compared;
    for (const [name, n] of comparison.tolerated) tolerated.set(name, (tolerated.get(name) ?? 0) + n);
    if (!comparison.divergence) continue;
    diverged++;
    if (divergences.length >= (options.maxShrunk ?? 5)) {
      more.push({ seed, divergence: comparison.divergence });
      continue;
    }
    const stepId = sequence[comparison.divergence.index]!.id;
    const shrunk = shrink(sequence, (candidate) => {
      const d = runBoth(options, candidate).comparison.divergence;
      return d !== undefined && candidate[d.index]!.id === stepId;
    }, options.shrinkBudget ?? 300);
    const final = runBoth(options, shrunk.sequence).comparison.divergence ?? comparison.divergence;
    divergences.push({ seed, originalLength: sequence.length, sequence: shrunk.sequence, divergence: final, shrinkTries: shrunk.tries });
  }
  return {
    sequences: options.sequences, calls, tolerated: Object.fromEntries(tolerated), diverged, divergences, more, elapsedMs: performance.now() - t0,
  };
}
