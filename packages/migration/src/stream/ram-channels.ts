// RAM channels beside the main stream (QEMU's multifd): the source spreads a pass's RAM records
// over several transports, each a stream of its own that opens with CHANNEL and ends each pass
// with SYNC; the destination applies what every channel brings as it comes, and lets no channel
// go on to the next pass before all of them have ended this one. Within a pass each page is sent
// at most once, so the newest copy of a page wins whatever channel it came by.

import { ArgumentError, type DirtyBitmap, type GuestMemory } from '@vmmkit/core';
import type { MigrationTransport } from './migration-transport.js';
import { readRamChannel, type AppliedRamRecord, type RamChannelHooks } from './ram-channel-read.js';
import { ramChannelThreadsPossible, threadReceiveLinks } from './ram-channel-threads.js';
import { forEachDirtyRecord, type RamSendResult } from './ram-pages.js';
import { MigrationStreamReader } from './stream-reader.js';
import type { MigrationStreamWriter } from './stream-writer.js';
import { Deferred } from './deferred.js';
import { MigrationRefusedError } from '../migration-errors.js';

/** The source's RAM channels, on this thread or in worker threads: what a migration uses of them. */
export interface RamChannelsOut {
  /** Number of channels. */
  readonly channels: number;
  /** Stream bytes written on all channels so far. */
  readonly bytesWritten: number;
  /** Open every channel: CHANNEL says which one it is, of how many. */
  open(): Promise<void>;
  /** Send the dirty pages of RAM block `blockIndex` over the channels. */
  send(memory: GuestMemory, blockIndex: number, dirty: DirtyBitmap): Promise<RamSendResult>;
  /** End pass `pass` on every channel (SYNC) and hand everything to the transports. */
  sync(pass: number): Promise<void>;
  /** End every channel's stream (after the last pass's sync). */
  end(): Promise<void>;
  /** Destroy every channel's transport (a failed or cancelled migration). */
  destroy(): void;
  /** Resolves once nothing of the channels is left (every thread they ran in has exited). */
  settled(): Promise<void>;
}

/** The source's RAM channels on this thread: one writer per channel, records dealt out in turn. */
export class RamChannelSender implements RamChannelsOut {
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

  /** Nothing to wait for: the channels ran on this thread. */
  settled(): Promise<void> {
    return Promise.resolve();
  }
}

/** Options of a {@link RamChannelReceiver}. */
export interface RamChannelReceiverOptions {
  /** The destination's guest RAM: pages are received into it in place. */
  readonly memory: GuestMemory;
  /** As the main stream's reader: refuse a channel silent this long (ms) while it is read. */
  readonly idleTimeoutMs?: number;
  /** Called with each RAM record once applied (the destination's account of corrupt pages). */
  readonly onRecord?: (record: AppliedRamRecord) => void;
  /**
   * Called once with the first channel's failure, as it happens (the owner may be waiting on
   * its main stream, not on `pass()`). The channels are destroyed by then.
   */
  readonly onFailure?: (error: unknown) => void;
  /**
   * Read each channel in a worker thread of its own, receiving pages straight into the shared
   * guest RAM, where that can be done (see `ramChannelThreadsPossible`); otherwise, and by
   * default, on this thread's event loop.
   */
  readonly threads?: boolean;
  /** With `threads`: the workers' module (see `ThreadOptions`), for tests of a failing worker. */
  readonly threadModule?: URL;
}

interface Gate {
  /** Channels that have sent SYNC for this pass. */
  arrived: number;
  readonly allArrived: Deferred;
  /** Resolves with whether the pass was the last (the channels then only wait for their end). */
  readonly release: Deferred<boolean>;
}

/**
 * One channel connection as the receiver sees it: read on this thread, or in a worker
 * (`ram-channel-threads.ts`). `run` reads it to its end, reporting through the hooks.
 */
export interface RamChannelLink {
  run(hooks: RamChannelHooks): Promise<void>;
  /** Stream bytes read so far (as last reported). */
  readonly bytesRead: number;
  /** Stop reading and drop the connection (idempotent). */
  destroy(): void;
  /** Resolves once nothing of the link is left (its thread, if it has one, has exited). */
  settled(): Promise<void>;
}

/** A channel connection read on this thread. */
class LocalChannelLink implements RamChannelLink {
  readonly #reader: MigrationStreamReader;

  constructor(private readonly transport: MigrationTransport, private readonly memory: GuestMemory, private readonly connection: number, private readonly channels: number, idleTimeoutMs?: number) {
    this.#reader = new MigrationStreamReader(transport, { memory, idleTimeoutMs });
  }

  get bytesRead(): number {
    return this.#reader.bytesRead;
  }

  run(hooks: RamChannelHooks): Promise<void> {
    return readRamChannel(this.#reader, this.memory, this.connection, this.channels, hooks);
  }

  destroy(): void {
    this.transport.destroy();
    this.#reader.stop();
  }

  settled(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * The destination's RAM channels. Reading starts at construction; the owner calls `pass(n)` when
 * the main stream ends pass n (QEMU's multifd_recv_sync_main), `end()` after the last, and
 * `destroy()` on failure or cancel (then `settled()` to know that nothing of them is left).
 */
export class RamChannelReceiver {
  readonly #links: readonly RamChannelLink[];
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

  /**
   * @throws ArgumentError without a channel; with `threads`, HostError when a connection cannot
   *   be handed to a thread (every transport is destroyed then).
   */
  constructor(transports: readonly MigrationTransport[], options: RamChannelReceiverOptions) {
    if (transports.length === 0) throw new ArgumentError('RamChannelReceiver: no channel');
    this.#options = options;
    const channels = transports.length;
    this.#links = options.threads && ramChannelThreadsPossible(options.memory, transports)
      ? threadReceiveLinks(transports, options)
      : transports.map((t, i) => new LocalChannelLink(t, options.memory, i, channels, options.idleTimeoutMs));
    // A failure is reported by pass() and end(); until someone asks, it must not be unhandled.
    this.#failed.promise.catch(() => undefined);
    this.#loops = this.#links.map((link, i) => link.run(this.#hooks(i)).catch((e: unknown) => this.#fail(e)));
  }

  /** Number of channels. */
  get channels(): number {
    return this.#links.length;
  }

  /** The first channel's failure, if one failed. */
  get failure(): unknown {
    return this.#failure;
  }

  /** Stream bytes read on all channels so far. */
  get bytesRead(): number {
    return this.#links.reduce((n, l) => n + l.bytesRead, 0);
  }

  /**
   * Resolves once every channel has sent SYNC for pass `pass`, all its records before it
   * applied; then lets the channels read on into the next pass or, when it is the `last`
   * (stop-copy's), only to their end: a channel that sends anything more is refused, and nothing
   * it sends reaches guest RAM, which is the running guest's from then on.
   * @throws the first channel's failure (a MigrationStreamError, MigrationTransportError,
   *   MigrationTimeoutError, MigrationRefusedError for a channel out of order, or
   *   MigrationChannelThreadError for a channel's thread that failed).
   */
  async pass(pass: number, last = false): Promise<void> {
    const gate = this.#gate(pass);
    this.#checkEnded(pass);
    await Promise.race([gate.allArrived.promise, this.#failed.promise]);
    this.#gates.delete(pass);
    gate.release.resolve(last);
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
    for (const l of this.#links) l.destroy();
  }

  /** Resolves once nothing of the channels is left: every thread they ran in has exited. */
  async settled(): Promise<void> {
    await Promise.all(this.#links.map((l) => l.settled()));
  }

  #hooks(connection: number): RamChannelHooks {
    const channels = this.#links.length;
    return {
      claim: (channel) => {
        if (this.#claimed.has(channel)) throw new MigrationRefusedError(`RAM channel ${channel} of ${channels} opened twice`);
        this.#claimed.add(channel);
      },
      applied: (record) => this.#options.onRecord?.(record),
      arrived: (pass) => {
        const gate = this.#gate(pass);
        if (++gate.arrived === channels) gate.allArrived.resolve();
        return gate.release.promise;
      },
      ended: (pass) => {
        this.#endedAfter[connection] = pass;
        for (const waiting of this.#gates.keys()) this.#checkEnded(waiting);
      },
    };
  }

  #gate(pass: number): Gate {
    let gate = this.#gates.get(pass);
    if (!gate) {
      gate = { arrived: 0, allArrived: new Deferred(), release: new Deferred<boolean>() };
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
