// Teardown that must run every step even when one fails, then report the first failure
// (QEMU's pattern of carrying on through cleanup and keeping the first Error).

/** Collects the failures of steps that must all run; remembers the first one. */
export class FirstFailure {
  #first: unknown;
  #failed = false;

  /** Run a step; remember its failure if it is the first. */
  run(step: () => void): void {
    try {
      step();
    } catch (e) {
      this.keep(e);
    }
  }

  /** Run an async step; remember its failure if it is the first. */
  async runAsync(step: () => unknown): Promise<void> {
    try {
      await step();
    } catch (e) {
      this.keep(e);
    }
  }

  /** Remember `e` if it is the first failure. */
  keep(e: unknown): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#first = e;
  }

  /** Whether a step failed. */
  get failed(): boolean {
    return this.#failed;
  }

  /** The first failure, if any step failed. */
  get first(): unknown {
    return this.#first;
  }

  /** Throw the first failure, if any step failed. */
  rethrow(): void {
    if (this.#failed) throw this.#first;
  }

  /** Run `step` for every item, in order, carrying on through failures; then throw the first. */
  static async forEach<T>(items: Iterable<T>, step: (item: T) => unknown): Promise<void> {
    const failures = new FirstFailure();
    for (const item of items) await failures.runAsync(() => step(item));
    failures.rethrow();
  }
}
