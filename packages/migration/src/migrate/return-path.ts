// The source's end of the return path (QEMU's rp thread): replies from the destination are read
// as they arrive, so that a destination that gives up (ERROR, or the connection lost) stops the
// source at its next step rather than at the end.

import { MigrationRefusedError } from '../migration-errors.js';
import { MigrationStreamReader } from '../stream/stream-reader.js';
import type { MigrationTransport } from '../stream/migration-transport.js';

type Reply = 'READY' | 'LOADED' | 'STARTED';

export class ReturnPath {
  readonly #replies: Reply[] = [];
  #failure: unknown;
  #refused = false;
  #wake: (() => void) | undefined;
  readonly #done: Promise<void>;

  constructor(transport: MigrationTransport) {
    this.#done = this.#run(new MigrationStreamReader(transport, { direction: 'return' }));
  }

  /** Throw now if the destination already gave up. */
  check(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** The next reply, which must be `expected`; throws when the destination gave up instead. */
  async expect(expected: Reply): Promise<void> {
    while (this.#replies.length === 0) {
      this.check();
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    const reply = this.#replies.shift()!;
    if (reply !== expected) throw new MigrationRefusedError(`the destination replied ${reply} where ${expected} was due`);
  }

  /**
   * The destination said, with ERROR, that it gave up: after GO, that it did not start the guest.
   * (A connection lost says nothing of the kind.)
   */
  get refused(): boolean {
    return this.#refused;
  }

  /**
   * The destination's refusal (ERROR) when it sent one before the connection was lost, waiting at
   * most `ms` for what it sent to be read. A destination that gives up sends ERROR and closes:
   * the source's next write may then fail on the closed connection before this path has read
   * the ERROR that says why.
   */
  async refusalAfterLoss(ms: number): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#done, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
    clearTimeout(timer);
    return this.#refused ? this.#failure : undefined;
  }

  /** Resolves when the return path ended (the destination closed it, or it failed). */
  get done(): Promise<void> {
    return this.#done;
  }

  async #run(reader: MigrationStreamReader<'return'>): Promise<void> {
    try {
      for (;;) {
        const record = await reader.next();
        if (!record) throw new MigrationRefusedError('the destination closed the connection');
        if (record.name === 'ERROR') {
          this.#refused = true;
          throw new MigrationRefusedError(`the destination refused the migration: ${record.text}`);
        }
        this.#replies.push(record.name);
        this.#wake?.();
        if (record.name === 'STARTED') return;
      }
    } catch (e) {
      this.#failure = e;
      this.#wake?.();
    }
  }
}
