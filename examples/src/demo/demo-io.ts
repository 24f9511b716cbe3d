// Where the demo writes: the process's stdout and stderr, or strings in tests.

/** A text stream; `isTTY` makes the progress bar redraw in place. */
export interface DemoOutput {
  write(text: string): unknown;
  readonly isTTY?: boolean;
}

export interface DemoIo {
  readonly out: DemoOutput;
  readonly err: DemoOutput;
}

/** The process's own streams. */
export function processIo(): DemoIo {
  return { out: process.stdout, err: process.stderr };
}
