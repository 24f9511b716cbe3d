// For fail-nth sweeps over a whole life of steps: each step runs whatever the ones before it
// did, and the errors they ended with are collected for the sweep to judge.

import { SimHost, type SimCensus } from '../sim-host.js';

/** A runner of steps that keeps going past failures, and the errors they ended with. */
export interface StepErrors {
  /** Run `fn`; a throw (or rejection) is recorded, not propagated. */
  step(fn: () => unknown): Promise<void>;
  /** What the steps so far ended with, in order (empty in a clean run). */
  readonly errors: unknown[];
}

export function stepErrors(): StepErrors {
  const errors: unknown[] = [];
  return {
    errors,
    async step(fn) {
      try {
        await fn();
      } catch (e) {
        errors.push(e);
      }
    },
  };
}

/** One run of a fail-nth sweep. */
export interface FaultRun {
  /** Which host call failed (1-based), and how the host names it. */
  readonly nth: number;
  readonly what: string;
  /** What the life's steps ended with. */
  readonly errors: readonly unknown[];
  /** The host the run used, and its census before the life began. */
  readonly host: SimHost;
  readonly baseline: SimCensus;
}

/**
 * A fail-nth sweep without a hand-kept list: run `life` once on a clean host to count its host
 * calls, then once per call on a fresh host with that call failing (`errno`, EIO by default),
 * handing each run to `check` (which asserts what a failure must leave). Resolves to the number
 * of calls, how many runs surfaced an error, and the clean run (whose errors should be none and
 * whose census should be back at its baseline).
 */
export async function failEachHostCall(
  life: (host: SimHost) => Promise<readonly unknown[]>,
  check: (run: FaultRun) => void,
  options: { readonly errno?: string; readonly host?: () => SimHost } = {},
): Promise<{ readonly calls: number; readonly surfaced: number; readonly clean: Omit<FaultRun, 'nth' | 'what'> }> {
  const makeHost = options.host ?? (() => new SimHost());
  const clean = makeHost();
  const cleanBaseline = clean.census();
  const cleanErrors = await life(clean);
  const calls = clean.callCount('any');
  let surfaced = 0;
  for (let nth = 1; nth <= calls; nth++) {
    const host = makeHost();
    const baseline = host.census();
    host.injectFault({ syscall: 'any', nth, errno: options.errno ?? 'EIO' });
    const errors = await life(host);
    if (errors.length) surfaced++;
    check({ nth, what: `fault at call ${nth} of ${calls} (${host.lastInjectedFault ?? 'none'})`, errors, host, baseline });
  }
  return { calls, surfaced, clean: { errors: cleanErrors, host: clean, baseline: cleanBaseline } };
}
