// The command line is wrong (exit status 2): what is wrong, the option it is about and its value.

/** A mistake on the command line. The message names the option and the value. */
export class UsageError extends Error {
  override readonly name = 'UsageError';

  /**
   * @param message one line naming the option (as typed, e.g. `-m`) and the value.
   * @param option the option or argument at fault (`-m`, `--incoming`, `URI`), when there is one.
   * @param value the value at fault, when there is one.
   */
  constructor(message: string, readonly option?: string, readonly value?: string) {
    super(message);
  }
}
