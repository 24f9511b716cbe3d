// Teardown that must run every step even when one fails, then report the first failure.

export class FirstError {
  #first: unknown;
  #failed = false;

  /** Run a step; remember its failure if it is the first. */
  run(step: () => void): void {
    try {
      step();
    } catch (e) {
      this.#keep(e);
    }
  }

  /** Run an async step; remember its failure if it is the first. */
  async runAsync(step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (e) {
      this.#keep(e);
    }
  }

  /** Throw the first failure, if any step failed. */
  rethrow(): void {
    if (this.#failed) throw this.#first;
  }

  #keep(e: unknown): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#first = e;
  }
}
