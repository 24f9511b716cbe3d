// The shrinker: delta debugging (ddmin) over a diverging sequence's steps, keeping a reduction
// while it still diverges at the same operation. Steps keep their ids, so references into removed
// steps resolve to "nothing made" and the shrunk sequence still runs.

import type { Sequence } from './model.js';

/** Still diverges in the way being shrunk: given a candidate sequence, run both hosts and compare. */
export type StillDiverges = (sequence: Sequence) => boolean;

/**
 * The smallest sequence ddmin finds that still diverges, trying at most `budget` candidates:
 * remove chunks (halves, quarters, ...) while that keeps the divergence, then single steps.
 */
export function shrink(sequence: Sequence, stillDiverges: StillDiverges, budget = 400): { sequence: Sequence; tries: number } {
  let current = sequence;
  let tries = 0;
  const attempt = (candidate: Sequence): boolean => {
    if (tries >= budget || candidate.length === 0) return false;
    tries++;
    return stillDiverges(candidate);
  };
  let chunks = 2;
  while (current.length >= 2 && tries < budget) {
    const size = Math.ceil(current.length / chunks);
    let reduced = false;
    for (let start = 0; start < current.length; start += size) {
      const candidate = [...current.slice(0, start), ...current.slice(start + size)];
      if (attempt(candidate)) {
        current = candidate;
        chunks = Math.max(chunks - 1, 2);
        reduced = true;
        break;
      }
    }
    if (reduced) continue;
    if (size === 1) break;
    chunks = Math.min(chunks * 2, current.length);
  }
  return { sequence: current, tries };
}
