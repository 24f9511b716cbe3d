// RAM channels beside the main stream (QEMU's multifd): the source spreads a pass's RAM records
// over several transports, each a stream of its own that opens with CHANNEL and ends each pass
// with SYNC; the destination applies what every channel brings as it comes, and lets no channel
// go on to the next pass before all of them have ended this one. Within a pass each page is sent
// at most once, so the newest copy of a page wins whatever channel it came by.

import { ArgumentError, type DirtyBitmap, type GuestMemory } from '@vmmkit/core';
import type { MigrationTransport } from './migration-transport.js';
import { applyRamRecord, forEachDirtyRecord, type RamSendResult } from './ram-pages.js';
import type { RamRecord } from './records.js';
import { MigrationStreamReader } from './stream-reader.js';
import type { MigrationStreamWriter } from './stream-writer.js';
import { MigrationRefusedError } from '../migration-errors.js';

/** The source's RAM channels: one writer per channel, records dealt out in turn. */
export class RamChannelSender {
  readonly #writers: readonly MigrationStreamWriter[];
  #turn = 0;

  /** @throws ArgumentError without a channel. */
  constructor(writers: readonly MigrationStreamWriter[]) {
    if (writers.length === 0) throw new ArgumentError('RamChannelSender: no channel');
    this.#writers = writers;
  }

  /** Number of channels. */
  get channels(): number {
    return this.#writers.length;
  }

  /** Stream bytes written on all channels so far. */
  get bytesWritten(): number {
    return this.#writers.reduce((n, w) => n + w.bytesWritten, 0);
  }

  /** Open every channel: CHANNEL says which one it is, of how many. */
  async open(): Promise<void> {
    const channels = this.#writers.length;
    await Promise.all(this.#writers.map((w, channel) => w.write({ name: 'CHANNEL', channel, channels })));
  }

  /**
   * Send the dirty pages of RAM block `blockIndex` as {@link sendDirtyPages} does, each record on
   * the next channel in turn (a write waits only for its own channel's backpressure).
   */
  async send(memory: GuestMemory, blockIndex: number, dirty: DirtyBitmap): Promise<RamSendResult> {
    const start = this.bytesWritten;
    const writers = this.#writers;
    const { pages, zeroPages } = await forEachDirtyRecord(memory, blockIndex, dirty, (record) => {
      const writer = writers[this.#turn]!;
      this.#turn = (this.#turn + 1) % writers.length;
      return writer.write(record);
    });
    return { pages, zeroPages, bytes: this.bytesWritten - start };
  }

  /** End pass `pass` on every channel (SYNC) and hand everything to the transports. */
  async sync(pass: number): Promise<void> {
    await Promise.all(this.#writers.map((w) => w.write({ name: 'SYNC', pass })));
  }

  /** End every channel's stream (after the last pass's sync). */
  async end(): Promise<void> {
    await Promise.all(this.#writers.map((w) => w.end()));
  }

  /** Destroy every channel's transport (a failed or cancelled migration). */
  destroy(): void {
    for (const w of this.#writers) w.transport.destroy();
  }
}

/** Options of a {@link RamChannelReceiver}. */
export interface RamChannelReceiverOptions {
  /** The destination's guest RAM: pages are received into it in place. */
  readonly memory: GuestMemory;
  /** As the main stream's reader: refuse a channel silent this long (ms) while it is read. */
  readonly idleTimeoutMs?: number;
  /** Called with each RAM record once applied (the destination's account of corrupt pages). */
  readonly onRecord?: (record: RamRecord) => void;
  /**
   * Called once with the first channel's failure, as it happens (the owner may be waiting on
   * its main stream, not on `pass()`). The channels are destroyed by then.
   */
  readonly onFailure?: (error: unknown) => void;
}

interface Gate {
  /** Channels that have sent SYNC for this pass. */
  arrived: number;
  readonly allArrived: Deferred;
  readonly release: Deferred;
}

/**
 * The destination's RAM channels. Reading starts at construction; the owner calls `pass(n)` when
 * the main stream ends pass n (QEMU's multifd_recv_sync_main), `end()` after the last, and
 * `destroy()` on failure or cancel.
 */
export class RamChannelReceiver {
  readonly #transports: readonly MigrationTransport[];
  readonly #readers: readonly MigrationStreamReader[];
  readonly #options: RamChannelReceiverOptions;
  readonly #gates = new Map<number, Gate>();
  readonly #loops: Promise<void>[];
  /** The channels whose connection has said CHANNEL. */
  readonly #claimed = new Set<number>();
  /** For each connection whose stream ended (after a SYNC), the pass it ended after. */
  readonly #endedAfter: (number | undefined)[] = [];
  #failure: unknown;
  /** The owner destroyed the channels (before any failed). */
  #stopped = false;
  readonly #failed = new Deferred();

  /** @throws ArgumentError without a channel. */
  constructor(transports: readonly MigrationTransport[], options: RamChannelReceiverOptions) {
    if (transports.length === 0) throw new ArgumentError('RamChannelReceiver: no channel');
    this.#transports = transports;
    this.#options = options;
    this.#readers = transports.map((t) => new MigrationStreamReader(t, { memory: options.memory, idleTimeoutMs: options.idleTimeoutMs }));
    // A failure is reported by pass() and end(); until someone asks, it must not be unhandled.
    this.#failed.promise.catch(() => undefined);
    this.#loops = this.#readers.map((r, i) => this.#run(r, i).catch((e: unknown) => this.#fail(e)));
  }

  /** Number of channels. */
  get channels(): number {
    return this.#readers.length;
  }

  /** The first channel's failure, if one failed. */
  get failure(): unknown {
    return this.#failure;
  }

  /** Stream bytes read on all channels so far. */
  get bytesRead(): number {
    return this.#readers.reduce((n, r) => n + r.bytesRead, 0);
  }

  /**
   * Resolves once every channel has sent SYNC for pass `pass`, all its records before it
   * applied; then lets the channels read on into the next pass.
   * @throws the first channel's failure (a MigrationStreamError, MigrationTransportError,
   *   MigrationTimeoutError, or MigrationRefusedError for a channel out of order).
   */
  async pass(pass: number): Promise<void> {
    const gate = this.#gate(pass);
    this.#checkEnded(pass);
    await Promise.race([gate.allArrived.promise, this.#failed.promise]);
    this.#gates.delete(pass);
    gate.release.resolve();
  }

  /** Resolves once every channel's stream has ended after its last SYNC. */
  async end(): Promise<void> {
    await Promise.race([Promise.all(this.#loops), this.#failed.promise]);
    if (this.#failure !== undefined) throw this.#failure;
  }

  /**
   * Destroy every channel's transport and stop reading (a failed or cancelled migration). What
   * the channels then run into is the owner's doing, not a failure of theirs: `pass()` and
   * `end()` reject with `reason`.
   */
  destroy(reason?: unknown): void {
    if (this.#failure === undefined && !this.#stopped) {
      this.#stopped = true;
      // Whoever waits on pass() or end() learns why: the owner's reason.
      const why = reason ?? new MigrationRefusedError('the RAM channels were closed');
      this.#failed.reject(why);
      for (const gate of this.#gates.values()) gate.release.reject(why);
    }
    for (const t of this.#transports) t.destroy();
    for (const r of this.#readers) r.stop();
  }

  async #run(reader: MigrationStreamReader, connection: number): Promise<void> {
    const channels = this.#readers.length;
    // Connections may be accepted in any order: CHANNEL says which channel each one is.
    const first = await reader.expectNext();
    if (first.name !== 'CHANNEL') throw new MigrationRefusedError(`RAM channel connection ${connection} opened with a ${first.name} record, not CHANNEL`);
    const channel = first.channel;
    if (first.channels !== channels || channel >= channels) {
      throw new MigrationRefusedError(`RAM channel connection ${connection} says it is channel ${channel} of ${first.channels}; this destination has ${channels}`);
    }
    if (this.#claimed.has(channel)) throw new MigrationRefusedError(`RAM channel ${channel} of ${channels} opened twice`);
    this.#claimed.add(channel);
    let pass: number | undefined;
    let inPass = false;
    for (;;) {
      const record = await reader.next();
      if (!record) {
        if (inPass || pass === undefined) throw new MigrationRefusedError(`RAM channel ${channel} ended ${pass === undefined ? 'before its first SYNC' : `inside the pass after ${pass}`}`);
        reader.stop();
        this.#endedAfter[connection] = pass;
        for (const waiting of this.#gates.keys()) this.#checkEnded(waiting);
        return;
      }
      switch (record.name) {
        case 'RAM_PAGES':
        case 'RAM_ZERO':
          applyRamRecord(this.#options.memory, record);
          this.#options.onRecord?.(record);
          inPass = true;
          break;
        case 'SYNC': {
          if (pass !== undefined && record.pass !== pass + 1) {
            throw new MigrationRefusedError(`RAM channel ${channel}: SYNC of pass ${record.pass} at offset ${record.offset} after pass ${pass}`);
          }
          pass = record.pass;
          inPass = false;
          const gate = this.#gate(pass);
          if (++gate.arrived === channels) gate.allArrived.resolve();
          await gate.release.promise;
          break;
        }
        default:
          throw new MigrationRefusedError(`RAM channel ${channel}: ${record.name} record at offset ${record.offset} (a channel carries RAM_PAGES, RAM_ZERO and SYNC)`);
      }
    }
  }

  #gate(pass: number): Gate {
    let gate = this.#gates.get(pass);
    if (!gate) {
      gate = { arrived: 0, allArrived: new Deferred(), release: new Deferred() };
      // A failure rejects every gate, awaited or not.
      gate.release.promise.catch(() => undefined);
      if (this.#failure !== undefined) gate.release.reject(this.#failure);
      this.#gates.set(pass, gate);
    }
    return gate;
  }

  /** A channel that ended before `pass` can never reach it: refuse waiting for it. */
  #checkEnded(pass: number): void {
    const connection = this.#endedAfter.findIndex((last) => last !== undefined && last < pass);
    if (connection >= 0) this.#fail(new MigrationRefusedError(`RAM channel connection ${connection} ended after pass ${this.#endedAfter[connection]}, before pass ${pass}`));
  }

  #fail(error: unknown): void {
    if (this.#failure !== undefined || this.#stopped) return;
    this.#failure = error;
    this.#failed.reject(error);
    for (const gate of this.#gates.values()) gate.release.reject(error);
    this.destroy();
    this.#options.onFailure?.(error);
  }
}

class Deferred {
  resolve!: () => void;
  reject!: (e: unknown) => void;
  readonly promise = new Promise<void>((resolve, reject) => {
    this.resolve = resolve;
    this.reject = reject;
  });
}
