// An in-process migration transport: two connected ends passing chunks by reference, with
// backpressure and an optional bandwidth limit (for tests that need several precopy iterations).

import { BandwidthPacer } from './bandwidth-pacer.js';
import { ChunkQueue } from './chunk-queue.js';
import type { MigrationTransport } from './migration-transport.js';
import { MigrationTransportError } from '../migration-errors.js';

/** Options of {@link transportPair}. */
export interface TransportPairOptions {
  /** Most bytes per second each direction carries; unlimited if absent. */
  readonly bandwidth?: number;
  /** Bytes a direction holds unread before `write` waits for the reader (default 4 MiB). */
  readonly highWaterMark?: number;
  /** Names of the two ends, for messages (default `pair:source` and `pair:destination`). */
  readonly names?: readonly [string, string];
}

/** Two connected in-process transports: what one writes, the other reads. */
export function transportPair(options: TransportPairOptions = {}): [MigrationTransport, MigrationTransport] {
  const [a, b] = options.names ?? ['pair:source', 'pair:destination'];
  const hwm = options.highWaterMark ?? 4 << 20;
  const left = new PairEnd(a, hwm, options.bandwidth);
  const right = new PairEnd(b, hwm, options.bandwidth);
  left.peer = right;
  right.peer = left;
  return [left, right];
}

type Waiter = { resolve: () => void; reject: (e: unknown) => void };

class PairEnd implements MigrationTransport {
  peer!: PairEnd;
  readonly #pacer: BandwidthPacer | undefined;
  /** What the peer wrote and this end has not read yet. */
  readonly #inbox = new ChunkQueue();
  /** The peer ended its side: read the inbox, then the end. */
  #peerEnded = false;
  #ended = false;
  #error: Error | undefined;
  #destroyed = false;
  #received = 0;
  #readWaiter: Waiter | undefined;
  /** The peer's writes waiting for this end to read its inbox below the high-water mark. */
  #drainWaiters: Waiter[] = [];

  constructor(
    readonly name: string,
    readonly highWaterMark: number,
    bandwidth: number | undefined,
  ) {
    this.#pacer = bandwidth === undefined ? undefined : new BandwidthPacer(bandwidth);
  }

  async write(chunks: readonly Uint8Array[]): Promise<void> {
    if (this.#error) throw this.#error;
    if (this.#ended) throw new MigrationTransportError(this.name, 'write after end');
    let bytes = 0;
    for (const c of chunks) bytes += c.byteLength;
    this.peer.#deliver(chunks);
    await this.#pacer?.pace(bytes);
    if (this.peer.#inbox.bytes > this.highWaterMark) await new Promise<void>((resolve, reject) => this.peer.#drainWaiters.push({ resolve, reject }));
    if (this.#error) throw this.#error;
  }

  /** Bytes the peer has delivered to this end so far, read or not. */
  get bytesReceived(): number {
    return this.#received;
  }

  async read(): Promise<Uint8Array | undefined> {
    // What the peer delivered (and its end) before the connection was lost is still read, as
    // over a socket; a destroyed end reads nothing more.
    if (this.#inbox.empty) {
      if (this.#destroyed) throw this.#error;
      if (this.#peerEnded) return undefined;
      if (this.#error) throw this.#error;
      await new Promise<void>((resolve, reject) => (this.#readWaiter = { resolve, reject }));
    }
    const chunk = this.#inbox.shift();
    if (this.#inbox.bytes <= this.highWaterMark) for (const w of this.#drainWaiters.splice(0)) w.resolve();
    return chunk;
  }

  async end(): Promise<void> {
    if (this.#error) throw this.#error;
    if (this.#ended) return;
    this.#ended = true;
    this.peer.#peerEnded = true;
    this.peer.#wakeReader();
  }

  destroy(error?: Error): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    // Both ends fail: set both errors first, since each end's blocked writes wait on the other.
    // Only this end drops what it received; the peer still reads what reached it.
    this.#error = error ?? this.#error ?? new MigrationTransportError(this.name, 'destroyed');
    this.#inbox.clear();
    this.peer.#error ??= new MigrationTransportError(this.peer.name, 'connection lost: the peer destroyed its end', { cause: error });
    this.#rejectWaiters();
    this.peer.#rejectWaiters();
  }

  #deliver(chunks: readonly Uint8Array[]): void {
    for (const c of chunks) {
      this.#inbox.push(c);
      this.#received += c.byteLength;
    }
    this.#wakeReader();
  }

  #wakeReader(): void {
    const w = this.#readWaiter;
    this.#readWaiter = undefined;
    w?.resolve();
  }

  #rejectWaiters(): void {
    // A waiting reader has an empty inbox: it fails now.
    this.#readWaiter?.reject(this.#error);
    this.#readWaiter = undefined;
    // The writes blocked on this end's inbox are the peer's: they fail with the peer's error.
    for (const w of this.#drainWaiters.splice(0)) w.reject(this.peer.#error);
  }
}
