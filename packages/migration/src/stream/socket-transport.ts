// A migration transport over a node:net socket (TCP or Unix), as QEMU's QIOChannelSocket: writes
// batched with cork/uncork into one writev; reads into buffers the transport chooses (Node's
// `onread`), so that page data can be received straight into guest memory (readInto).

import net, { type OnReadOpts, type Socket } from 'node:net';
import { duplicateProcessFd } from '@vmmkit/core';
import { ChunkQueue } from './chunk-queue.js';
import type { MigrationTransport } from './migration-transport.js';
import { MigrationTransportError } from '../migration-errors.js';

// Bytes received and not yet read that make the socket stop reading (TCP then pushes back).
const READ_HIGH_WATER = 4 << 20;
// Size of the buffer a read lands in when no readInto target is waiting.
const READ_SIZE = 64 << 10;
// A read this small is copied out of that buffer, which is then reused, rather than handed out.
const COPY_OUT = 16 << 10;
// Node's write buffer per socket before `write` waits: big enough for a few 1 MiB RAM records.
const WRITE_HIGH_WATER = 4 << 20;
// TCP keepalive: after this much silence the kernel probes the peer (libuv then sends up to 10
// probes 1 s apart), so a peer whose host died or whose network went away without a reset is
// found in about 20 s instead of never. That matters where a side only waits (the source for
// READY or LOADED, the destination for GO); a silent but alive peer is the idle timeout's job.
const KEEPALIVE_IDLE_MS = 10_000;

type Waiter<T> = { resolve: (value: T) => void; reject: (e: unknown) => void };

/** A pending readInto: the target, how much of it is filled, and its caller. */
interface Target extends Waiter<number> {
  readonly view: Uint8Array;
  filled: number;
  /** The view of the unfilled rest handed to the socket for its next read. */
  armed: Uint8Array | undefined;
}

/** A {@link MigrationTransport} over a connected socket, which it owns. */
export class SocketTransport implements MigrationTransport {
  readonly #socket: Socket;
  readonly #inbox = new ChunkQueue();
  #received = 0;
  #spare = Buffer.allocUnsafe(READ_SIZE);
  #target: Target | undefined;
  #paused = false;
  #eof = false;
  #ended = false;
  #error: Error | undefined;
  #readWaiter: Waiter<void> | undefined;
  #drainWaiters: Waiter<void>[] = [];

  /**
   * @param name the address, for messages (`tcp:127.0.0.1:4444`).
   * @param make creates the socket with the `onread` option given (see `connect` and `adopt`).
   */
  private constructor(readonly name: string, make: (onread: OnReadOpts) => Socket) {
    this.#socket = make({ buffer: () => this.#nextBuffer(), callback: (n, buf) => this.#onRead(n, buf) });
    const socket = this.#socket;
    // Records are batched by the writer; handshake records must not wait for Nagle.
    socket.setNoDelay(true);
    // A no-op on Unix sockets (no TCP); on a socket still connecting it applies on connect.
    socket.setKeepAlive(true, KEEPALIVE_IDLE_MS);
    socket.on('end', () => {
      this.#eof = true;
      this.#settleTarget();
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

  /** Connect to `options` (a socket that is connecting: wait for its `connect` via `socket`). */
  static connect(name: string, options: net.TcpNetConnectOpts | net.IpcNetConnectOpts): SocketTransport {
    // net.Socket passes highWaterMark on to its stream (the typings do not list it).
    const all = { ...options, allowHalfOpen: true, highWaterMark: WRITE_HIGH_WATER };
    return new SocketTransport(name, (onread) => net.connect({ ...all, onread } as net.NetConnectOpts));
  }

  /**
   * Take over a socket a server accepted (created with `pauseOnConnect`, not read from yet).
   * Servers cannot give accepted sockets `onread`, so its handle moves to a socket that has it;
   * the accepted socket object is dropped.
   */
  static adopt(name: string, accepted: Socket): SocketTransport {
    const handle = (accepted as unknown as { _handle?: unknown })._handle;
    if (!handle) throw new MigrationTransportError(name, 'the accepted connection has no handle to take over');
    const options = { handle, allowHalfOpen: true, readable: true, writable: true, highWaterMark: WRITE_HIGH_WATER };
    return new SocketTransport(name, (onread) => new net.Socket({ ...options, onread } as net.SocketConstructorOpts));
  }

  /**
   * A connection another thread of this process handed over ({@link SocketTransport.detach}): `fd`
   * becomes this transport's, and `received` (bytes that thread had received and not read) is
   * read first.
   */
  static fromFd(name: string, fd: number, received: readonly Uint8Array[] = []): SocketTransport {
    const options = { fd, allowHalfOpen: true, readable: true, writable: true, highWaterMark: WRITE_HIGH_WATER };
    const transport = new SocketTransport(name, (onread) => new net.Socket({ ...options, onread } as net.SocketConstructorOpts));
    for (const chunk of received) {
      transport.#inbox.push(chunk);
      transport.#received += chunk.byteLength;
    }
    return transport;
  }

  /**
   * Give the connection up to another thread (see {@link SocketTransport.fromFd}): stop reading,
   * duplicate the socket's fd and close this transport's own fd, which neither ends nor resets
   * the connection (the duplicate keeps it open). Only on a transport that has written nothing.
   * Returns the duplicate, now the caller's, and the bytes received and not read.
   * @throws MigrationTransportError when the transport failed, wrote, or has no fd (the transport
   *   is destroyed then); HostError when no fd is left for the duplicate (nothing changed).
   */
  detach(): { fd: number; received: Uint8Array[] } {
    const socket = this.#socket;
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    const why = this.#error ? 'it failed' : this.#ended || socket.bytesWritten > 0 ? 'it has written' : fd === undefined || fd < 0 ? 'it has no fd' : undefined;
    if (why !== undefined) {
      const error = new MigrationTransportError(this.name, `cannot hand the connection to another thread: ${why}`, { cause: this.#error });
      this.destroy(error);
      throw error;
    }
    socket.pause();
    const copy = duplicateProcessFd(fd!);
    const received: Uint8Array[] = [];
    for (let chunk = this.#inbox.shift(); chunk; chunk = this.#inbox.shift()) received.push(chunk);
    this.#fail(new MigrationTransportError(this.name, 'handed to another thread'), true);
    socket.destroy();
    return { fd: copy, received };
  }

  /** The socket (to wait for `connect`, or read its addresses). */
  get socket(): Socket {
    return this.#socket;
  }

  /** Bytes received from the peer so far, read or not. */
  get bytesReceived(): number {
    return this.#received;
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
        if (this.#inbox.bytes <= READ_HIGH_WATER / 2) this.#resume();
        return chunk;
      }
      // The end of the peer's stream counts even if the socket closed after it.
      if (this.#eof) return undefined;
      if (this.#error) throw this.#error;
      this.#resume();
      await new Promise<void>((resolve, reject) => (this.#readWaiter = { resolve, reject }));
    }
  }

  /**
   * Fill `target` with the next bytes of the stream: what was received already is copied, the
   * rest is read by the kernel straight into `target`. Resolves with the bytes placed, fewer than
   * `target.byteLength` only where the stream ended.
   */
  async readInto(target: Uint8Array): Promise<number> {
    if (this.#target) throw new MigrationTransportError(this.name, 'readInto while another is pending');
    let filled = 0;
    for (let chunk = this.#inbox.shift(); chunk; chunk = filled < target.byteLength ? this.#inbox.shift() : undefined) {
      const n = Math.min(chunk.byteLength, target.byteLength - filled);
      target.set(n === chunk.byteLength ? chunk : chunk.subarray(0, n), filled);
      filled += n;
      if (n < chunk.byteLength) this.#inbox.unshift(chunk.subarray(n));
    }
    if (filled === target.byteLength || this.#eof) return filled;
    if (this.#error) throw this.#error;
    return new Promise<number>((resolve, reject) => {
      this.#target = { view: target, filled, armed: undefined, resolve, reject };
      this.#resume();
    });
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
    // After end() the peer is to read what was written and then the end, so the socket closes
    // normally (a reset would drop data still in the kernel's send queue). Otherwise a reset
    // (TCP only) makes the peer's pending calls fail at once instead of reading an end.
    if (this.#ended) return void this.#socket.destroy();
    try {
      this.#socket.resetAndDestroy();
    } catch {
      this.#socket.destroy();
    }
  }

  /** Where the socket's next read lands: the rest of a waiting target, or the spare buffer. */
  #nextBuffer(): Uint8Array {
    const target = this.#target;
    if (!target) return this.#spare;
    target.armed = target.view.subarray(target.filled);
    return target.armed;
  }

  /** A read completed into `buf`. Returns false to stop reading (the inbox is full). */
  #onRead(n: number, buf: Uint8Array): boolean {
    this.#received += n;
    const target = this.#target;
    if (target && buf === target.armed) {
      target.filled += n;
      target.armed = undefined;
      if (target.filled === target.view.byteLength) this.#settleTarget();
      return true;
    }
    // A read into the spare buffer: it goes to a waiting target first (it was armed before the
    // target came), the rest to the inbox.
    let used = 0;
    if (target) {
      used = Math.min(n, target.view.byteLength - target.filled);
      target.view.set(buf.subarray(0, used), target.filled);
      target.filled += used;
      if (target.filled === target.view.byteLength) this.#settleTarget();
    }
    if (used < n) {
      if (n - used <= COPY_OUT) this.#inbox.push(Uint8Array.prototype.slice.call(buf, used, n));
      else {
        this.#inbox.push(buf.subarray(used, n));
        this.#spare = Buffer.allocUnsafe(READ_SIZE);
      }
      this.#wakeReader();
    }
    if (this.#target || this.#inbox.bytes <= READ_HIGH_WATER) return true;
    this.#paused = true;
    return false;
  }

  #resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#socket.resume();
  }

  /** Resolve the pending readInto with what it has (full, or short at the end of the stream). */
  #settleTarget(): void {
    const target = this.#target;
    if (!target || (target.filled < target.view.byteLength && !this.#eof)) return;
    this.#target = undefined;
    target.resolve(target.filled);
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
    this.#wakeReader();
    this.#target?.reject(error);
    this.#target = undefined;
    for (const w of this.#drainWaiters.splice(0)) w.reject(error);
  }
}
