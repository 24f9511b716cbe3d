// A migration transport over a connected node:net socket (TCP or Unix), as QEMU's
// QIOChannelSocket: writes batched with cork/uncork into one writev, reads queued with backpressure.

import type { Socket } from 'node:net';
import { ChunkQueue } from './chunk-queue.js';
import type { MigrationTransport } from './migration-transport.js';
import { MigrationTransportError } from './stream-errors.js';

// Bytes received and not yet read that make the socket stop reading (TCP then pushes back).
const READ_HIGH_WATER = 4 << 20;

type Waiter<T> = { resolve: (value: T) => void; reject: (e: unknown) => void };

/** A {@link MigrationTransport} over a connected socket, which it owns from then on. */
export class SocketTransport implements MigrationTransport {
  readonly #socket: Socket;
  readonly #inbox = new ChunkQueue<Buffer>();
  #eof = false;
  #ended = false;
  #error: Error | undefined;
  #readWaiter: Waiter<void> | undefined;
  #drainWaiters: Waiter<void>[] = [];

  /** @param name the address, for messages (`tcp:127.0.0.1:4444`). */
  constructor(socket: Socket, readonly name: string) {
    this.#socket = socket;
    // Records are batched by the writer; handshake records must not wait for Nagle.
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.#inbox.push(chunk);
      if (this.#inbox.bytes > READ_HIGH_WATER) socket.pause();
      this.#wakeReader();
    });
    socket.on('end', () => {
      this.#eof = true;
      this.#wakeReader();
    });
    socket.on('drain', () => {
      for (const w of this.#drainWaiters.splice(0)) w.resolve();
    });
    socket.on('error', (e) => this.#fail(new MigrationTransportError(name, 'connection lost', { cause: e })));
    socket.on('close', () => {
      if (!this.#error) this.#fail(new MigrationTransportError(name, this.#eof ? 'connection closed' : 'connection closed before the peer ended its stream'));
    });
  }

  async write(chunks: readonly Uint8Array[]): Promise<void> {
    if (this.#error) throw this.#error;
    if (this.#ended) throw new MigrationTransportError(this.name, 'write after end');
    const socket = this.#socket;
    // Corked writes leave in one writev when uncorked: a header and its page data together.
    socket.cork();
    for (const c of chunks) socket.write(c);
    socket.uncork();
    if (socket.writableNeedDrain) await new Promise<void>((resolve, reject) => this.#drainWaiters.push({ resolve, reject }));
  }

  async read(): Promise<Uint8Array | undefined> {
    for (;;) {
      const chunk = this.#inbox.shift();
      if (chunk) {
        if (this.#inbox.bytes <= READ_HIGH_WATER / 2 && this.#socket.isPaused()) this.#socket.resume();
        return chunk;
      }
      // The end of the peer's stream counts even if the socket closed after it.
      if (this.#eof) return undefined;
      if (this.#error) throw this.#error;
      await new Promise<void>((resolve, reject) => (this.#readWaiter = { resolve, reject }));
    }
  }

  end(): Promise<void> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.#ended) return Promise.resolve();
    this.#ended = true;
    return new Promise<void>((resolve, reject) => {
      this.#drainWaiters.push({ resolve: () => undefined, reject });
      this.#socket.end(() => resolve());
    });
  }

  destroy(error?: Error): void {
    if (this.#socket.destroyed && this.#error) return;
    this.#fail(error ?? new MigrationTransportError(this.name, 'destroyed'), true);
    try {
      // A reset (TCP only) makes the peer's pending calls fail at once instead of reading an end.
      this.#socket.resetAndDestroy();
    } catch {
      this.#socket.destroy();
    }
  }

  #wakeReader(): void {
    const w = this.#readWaiter;
    this.#readWaiter = undefined;
    w?.resolve();
  }

  /** Record the first failure and fail everything waiting; a local destroy also drops what was received. */
  #fail(error: Error, local = false): void {
    if (local) {
      this.#inbox.clear();
      this.#eof = false;
    }
    if (this.#error) return;
    this.#error = error;
    const reader = this.#readWaiter;
    this.#readWaiter = undefined;
    reader?.resolve();
    for (const w of this.#drainWaiters.splice(0)) w.reject(error);
  }
}
