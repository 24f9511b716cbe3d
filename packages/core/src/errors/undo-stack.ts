// Multi-step setup with explicit rollback (QEMU's err_* goto ladders): push the undo of each
// step as it succeeds; on failure unwind newest first, keeping the original error.

import { FirstFailure } from './first-failure.js';

export class UndoStack {
  readonly #steps: (() => void | Promise<void>)[] = [];

  /** Remember how to undo the step that just succeeded. */
  push(undo: () => void | Promise<void>): void {
    this.#steps.push(undo);
  }

  /**
   * Undo everything, newest first. Every undo runs even if one throws; the first failure is
   * rethrown after all have run (callers that are already failing use `unwindQuietly`).
   */
  async unwind(): Promise<void> {
    await FirstFailure.forEach(this.#steps.splice(0).reverse(), (undo) => undo());
  }

  /** Undo everything, newest first, ignoring failures (the caller is reporting an earlier one). */
  async unwindQuietly(): Promise<void> {
    try {
      await this.unwind();
    } catch {
      // The original error is the one worth reporting.
    }
  }

  /** Forget the undo steps: the whole operation succeeded. */
  commit(): void {
    this.#steps.length = 0;
  }

  /** Run `body` with an undo stack: on failure everything pushed is undone and the error rethrown. */
  static async run<T>(body: (undo: UndoStack) => Promise<T>): Promise<T> {
    const undo = new UndoStack();
    try {
      const result = await body(undo);
      undo.commit();
      return result;
    } catch (e) {
      await undo.unwindQuietly();
      throw e;
    }
  }
}
