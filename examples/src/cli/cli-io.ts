// Where the CLI writes and how it learns it should stop: the process's stdout, stderr and
// SIGINT/SIGTERM in main.ts, something a test controls in the tests.

/** The CLI's outside world. */
export interface CliIo {
  /** Write one line to standard output. */
  out(line: string): void;
  /** Write one line to standard error. */
  err(line: string): void;
  /**
   * Call `listener` when the user asks the CLI to stop (SIGINT, SIGTERM), until the returned
   * function is called.
   */
  onInterrupt(listener: (signal: string) => void): () => void;
}

/** The process's own stdout, stderr and termination signals. */
export function processIo(): CliIo {
  return {
    out: (line) => void process.stdout.write(`${line}\n`),
    err: (line) => void process.stderr.write(`${line}\n`),
    onInterrupt(listener) {
      const signals = ['SIGINT', 'SIGTERM'] as const;
      for (const s of signals) process.on(s, listener);
      return () => {
        for (const s of signals) process.off(s, listener);
      };
    },
  };
}
