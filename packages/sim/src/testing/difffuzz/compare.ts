// Comparing two hosts' traces of a sequence step by step: the result (ok or the errno), the return
// value and every output field, normalized (ids and fds by the step that made them). The first
// difference no tolerance explains is the divergence; the comparison stops there, since what
// follows depends on it.

import { stringify, type Sequence, type StepResult, type Trace } from './model.js';
import type { Tolerance } from './tolerated.js';

/** Where two traces part. */
export interface Divergence {
  /** Index of the step in the sequence. */
  readonly index: number;
  readonly op: string;
  /** The reference host's (Linux's) result, and the candidate's (SimHost's). */
  readonly reference: StepResult;
  readonly candidate: StepResult;
}

/** What a comparison found: how many steps were compared, the tolerances used, and the divergence if any. */
export interface Comparison {
  readonly compared: number;
  readonly tolerated: ReadonlyMap<string, number>;
  readonly divergence?: Divergence;
}

/** Whether two results are the same. */
export function sameResult(a: StepResult, b: StepResult): boolean {
  return stringify(a) === stringify(b);
}

/** Compare `reference` with `candidate` for `sequence`, letting `tolerated` differences pass. */
export function compareTraces(sequence: Sequence, reference: Trace, candidate: Trace, tolerated: readonly Tolerance[]): Comparison {
  const used = new Map<string, number>();
  for (let i = 0; i < sequence.length; i++) {
    const [a, b] = [reference[i]!, candidate[i]!];
    if (sameResult(a, b)) continue;
    const tolerance = tolerated.find((t) => t.matches(sequence, i, a, b));
    if (tolerance) {
      used.set(tolerance.name, (used.get(tolerance.name) ?? 0) + 1);
      continue;
    }
    return { compared: i + 1, tolerated: used, divergence: { index: i, op: sequence[i]!.op, reference: a, candidate: b } };
  }
  return { compared: sequence.length, tolerated: used };
}
