// A CliIo for tests: collects what the CLI prints and lets the test interrupt it as SIGINT would.

import type { CliIo } from '../src/cli/cli-io.js';

export interface TestIo {
  readonly io: CliIo;
  /** Lines written to stdout and stderr. */
  readonly out: string[];
  readonly err: string[];
  /** Deliver a signal to whoever listens (as the process's SIGINT/SIGTERM handlers would). */
  interrupt(signal?: string): void;
  /** Resolves when stdout gets a line matching `pattern`. */
  waitForLine(pattern: RegExp): Promise<string>;
}

export function testIo(): TestIo {
  const out: string[] = [];
  const err: string[] = [];
  const listeners = new Set<(signal: string) => void>();
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  const io: CliIo = {
    out(line) {
      out.push(line);
      for (const w of [...waiters]) {
        if (w.pattern.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    },
    err: (line) => void err.push(line),
    onInterrupt(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
  };
  return {
    io, out, err,
    interrupt: (signal = 'SIGINT') => listeners.forEach((l) => l(signal)),
    waitForLine: (pattern) => {
      const seen = out.find((l) => pattern.test(l));
      return seen !== undefined ? Promise.resolve(seen) : new Promise((resolve) => waiters.push({ pattern, resolve }));
    },
  };
}
