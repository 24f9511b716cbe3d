// The idle timeout of a stream reader: while the reader waits for bytes, a timer checks that some
// arrive, and ends the wait when none came for the timeout. A stalled peer then cannot hold the
// reader (and what its owner keeps for the migration) forever.

import type { MigrationTransport } from './migration-transport.js';

/** Waits for the transport, each ended after `timeoutMs` without a byte. */
export class IdleWatch {
  /** How often a wait is checked: the timeout fires at most this late. */
  readonly #period: number;
  /** When the current wait began, or -1 between waits. */
  #waitingSince = -1;
  /** When the byte count last moved (or the wait began). */
  #quietSince = 0;
  #seen = 0;
  #timer: NodeJS.Timeout | undefined;
  #reject: ((error: unknown) => void) | undefined;

  /**
   * @param timeoutMs how long a wait may see no byte.
   * @param transport its `bytesReceived` (where it has one) shows bytes arriving inside one long
   *   wait, such as a `readInto` of a whole record.
   * @param expired makes the error a wait rejects with, given how long it saw nothing.
   */
  constructor(
    readonly timeoutMs: number,
    private readonly transport: MigrationTransport,
    private readonly expired: (quietMs: number) => Error,
  ) {
    this.#period = Math.max(1, Math.min(timeoutMs / 4, 1000));
  }

  /**
   * `pending` (a read from the transport), unless no byte arrives for the timeout: then the
   * returned promise rejects with the `expired` error, and `pending` is left to its owner (who
   * destroys the transport).
   */
  wait<T>(pending: Promise<T>): Promise<T> {
    const now = performance.now();
    this.#waitingSince = this.#quietSince = now;
    this.#seen = this.transport.bytesReceived ?? 0;
    this.#timer ??= setTimeout(() => this.#tick(), this.#period);
    return new Promise<T>((resolve, reject) => {
      this.#reject = reject;
      pending.then(
        (value) => {
          this.#waitingSince = -1;
          resolve(value);
        },
        (error: unknown) => {
          this.#waitingSince = -1;
          reject(error);
        },
      );
    });
  }

  /** No more waits: drop the timer. */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#waitingSince = -1;
  }

  #tick(): void {
    this.#timer = undefined;
    if (this.#waitingSince < 0) return;
    const now = performance.now();
    const seen = this.transport.bytesReceived ?? 0;
    if (seen !== this.#seen) {
      this.#seen = seen;
      this.#quietSince = now;
    }
    const quiet = now - this.#quietSince;
    if (quiet < this.timeoutMs) {
      this.#timer = setTimeout(() => this.#tick(), Math.min(this.#period, this.timeoutMs - quiet));
      return;
    }
    this.#waitingSince = -1;
    this.#reject?.(this.expired(quiet));
  }
}
