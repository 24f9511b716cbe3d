// Opening socket transports: the destination listens and accepts one connection (QEMU's
// `-incoming tcp:...`), or a few with RAM channels; the source connects (`migrate tcp:...`).
// Errors name the address.

import net from 'node:net';
import { formatSocketAddress, parseSocketAddress, type SocketAddress } from './socket-address.js';
import { SocketTransport } from './socket-transport.js';
import { MigrationTransportError } from '../migration-errors.js';

/** A listening socket that accepts one migration connection (or `connections` of them). */
export interface SocketListener {
  /** The bound address (with the port the system chose for port 0). */
  readonly address: SocketAddress;
  /** The bound address as a URI, e.g. `tcp:127.0.0.1:41234`. */
  readonly name: string;
  /**
   * The next connection, in the order they came. The listener stops listening once it has had
   * as many as it takes (later attempts are refused). Rejects with `MigrationTransportError`
   * after `timeoutMs`, on a listening error, or once closed.
   */
  accept(options?: { readonly timeoutMs?: number }): Promise<SocketTransport>;
  /** Stop listening, and drop the connections that were not accepted. Idempotent. */
  close(): Promise<void>;
}

/** Options of {@link listenMigration}. */
export interface ListenOptions {
  /**
   * How many connections the listener takes: 1 (default) for a migration on one stream, more for
   * a source with RAM channels (which it may announce only in SETUP: take as many as it may send).
   */
  readonly connections?: number;
}

/**
 * Listen on `tcp:HOST:PORT` or `unix:PATH` for one migration connection (or `connections`).
 * @throws MigrationTransportError naming the address when it cannot listen (in use, no permission).
 */
export async function listenMigration(address: string | SocketAddress, options: ListenOptions = {}): Promise<SocketListener> {
  const wanted = parseSocketAddress(address);
  // Accepted sockets must not start reading: the transport takes their handle over (adopt).
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new MigrationTransportError(formatSocketAddress(wanted), 'cannot listen', { cause: e })));
    server.listen(wanted.kind === 'tcp' ? { host: wanted.host, port: wanted.port } : { path: wanted.path }, resolve);
  });
  const bound = server.address();
  const actual: SocketAddress = wanted.kind === 'tcp' && bound && typeof bound === 'object' ? { ...wanted, port: bound.port } : wanted;
  return new Listener(server, actual, Math.max(1, Math.floor(options.connections ?? 1)));
}

/**
 * Connect to a listening destination.
 * @throws ConfigError for an address that is not one, or has port 0.
 * @throws MigrationTransportError naming the address when the connection fails or takes longer than `timeoutMs`.
 */
export function connectMigration(address: string | SocketAddress, options: { readonly timeoutMs?: number } = {}): Promise<SocketTransport> {
  const target = parseSocketAddress(address, 'connect');
  const name = formatSocketAddress(target);
  return new Promise((resolve, reject) => {
    const where = target.kind === 'tcp' ? { host: target.host, port: target.port } : { path: target.path };
    const transport = SocketTransport.connect(name, where);
    const socket = transport.socket;
    const fail = (detail: string, cause?: unknown): void => {
      clearTimeout(timer);
      socket.off('connect', connected);
      // destroy(), not a reset: a reset of a socket still connecting waits for the connection.
      socket.destroy();
      reject(new MigrationTransportError(name, detail, { cause }));
    };
    const connected = (): void => {
      clearTimeout(timer);
      socket.off('error', refused);
      resolve(transport);
    };
    const refused = (e: Error): void => fail('cannot connect', e);
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => fail(`no connection within ${options.timeoutMs} ms`), options.timeoutMs);
    socket.once('error', refused);
    socket.once('connect', connected);
  });
}

class Listener implements SocketListener {
  readonly name: string;
  readonly #server: net.Server;
  /** Connections not handed out by accept() yet, in the order they came. */
  readonly #pending: SocketTransport[] = [];
  readonly #waiters: { resolve: (t: SocketTransport) => void; reject: (e: Error) => void }[] = [];
  #count = 0;
  #failure: Error | undefined;

  constructor(server: net.Server, readonly address: SocketAddress, limit: number) {
    this.name = formatSocketAddress(address);
    this.#server = server;
    server.on('connection', (socket) => {
      if (this.#count >= limit || this.#failure) return void socket.destroy();
      if (++this.#count === limit) server.close();
      let transport: SocketTransport;
      try {
        transport = SocketTransport.adopt(this.name, socket);
      } catch (e) {
        socket.destroy();
        return this.#fail(e instanceof Error ? e : new MigrationTransportError(this.name, String(e)));
      }
      const waiter = this.#waiters.shift();
      if (waiter) waiter.resolve(transport);
      else this.#pending.push(transport);
    });
    server.on('error', (e) => this.#fail(new MigrationTransportError(this.name, 'listening failed', { cause: e })));
  }

  async accept(options: { readonly timeoutMs?: number } = {}): Promise<SocketTransport> {
    const ready = this.#pending.shift();
    if (ready) return ready;
    if (this.#failure) throw this.#failure;
    let timer: NodeJS.Timeout | undefined;
    const waiter = { resolve: (_: SocketTransport) => {}, reject: (_: Error) => {} };
    const next = new Promise<SocketTransport>((resolve, reject) => Object.assign(waiter, { resolve, reject }));
    this.#waiters.push(waiter);
    if (options.timeoutMs !== undefined) {
      timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        waiter.reject(new MigrationTransportError(this.name, `no connection within ${options.timeoutMs} ms`));
      }, options.timeoutMs);
    }
    try {
      return await next;
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.#fail(new MigrationTransportError(this.name, 'listener closed'));
    for (const t of this.#pending.splice(0)) t.destroy();
    if (!this.#server.listening) return;
    // close()'s callback waits for the server's connections to end: the accepted ones belong to
    // their transports now, so only a listener that never had one waits for it.
    if (this.#count > 0) this.#server.close();
    else await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #fail(error: Error): void {
    this.#failure ??= error;
    for (const w of this.#waiters.splice(0)) w.reject(this.#failure);
  }
}
