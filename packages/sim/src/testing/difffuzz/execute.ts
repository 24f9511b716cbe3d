// Running a sequence on one host: each step's result, then everything the sequence made is closed
// and unmapped. An exception other than a HostError is recorded as the step's result ('THROW'),
// so a simulator bug shows up as a divergence (or a crash in a SimHost-only run) with its sequence.

import { InvariantError } from '@vmmkit/core';
import type { HostKernel } from '@vmmkit/core';
import { OPS } from './generate.js';
import type { Sequence, StepResult, Trace } from './model.js';
import { Run, type FuzzMachine } from './run.js';

/** The result every host-side failure that is not an errno becomes. */
export const THROW = 'THROW';

/** Run `sequence` on `host` from a clean start; returns its trace. Cleans up whatever happens. */
export function execute(host: HostKernel, machine: FuzzMachine, sequence: Sequence): Trace {
  const run = new Run(host, machine);
  const trace: StepResult[] = [];
  try {
    for (const step of sequence) {
      const spec = OPS.get(step.op);
      if (!spec) throw new InvariantError(`difffuzz: no operation '${step.op}'`);
      try {
        trace.push(spec.run(run, step));
      } catch (e) {
        trace.push({ r: THROW, v: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
      }
    }
  } finally {
    run.dispose();
  }
  return trace;
}
