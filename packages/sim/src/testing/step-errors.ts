// For fail-nth sweeps over a whole life of steps: each step runs whatever the ones before it
// did, and the errors they ended with are collected for the sweep to judge.

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
