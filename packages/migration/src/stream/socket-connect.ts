// Opening socket transports: the destination listens and accepts one connection (QEMU's
// `-incoming tcp:...`), the source connects (`migrate tcp:...`). Errors name the address.

import net from 'node:net';
import { formatSocketAddress, parseSocketAddress, type SocketAddress } from './socket-address.js';
import { SocketTransport } from './socket-transport.js';
import { MigrationTransportError } from '../migration-errors.js';

/** A listening socket that accepts one migration connection. */
export interface SocketListener {
  /** The bound address (with the port the system chose for port 0). */
  readonly address: SocketAddress;
  /** The bound address as a URI, e.g. `tcp:127.0.0.1:41234`. */
  readonly name: string;
  /**
   * The first connection. The listener stops listening once it has one (later attempts are
   * refused). Rejects with `MigrationTransportError` after `timeoutMs` or on a listening error.
   */
  accept(options?: { readonly timeoutMs?: number }): Promise<SocketTransport>;
  /** Stop listening, and drop a connection that was not accepted. Idempotent. */
  close(): Promise<void>;
}

/**
 * Listen on `tcp:HOST:PORT` or `unix:PATH` for one migration connection.
 * @throws MigrationTransportError naming the address when it cannot listen (in use, no permission).
 */
export async function listenMigration(address: string | SocketAddress): Promise<SocketListener> {
  const wanted = parseSocketAddress(address);
  // Accepted sockets must not start reading: the transport takes their handle over (adopt).
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new MigrationTransportError(formatSocketAddress(wanted), 'cannot listen', { cause: e })));
    server.listen(wanted.kind === 'tcp' ? { host: wanted.host, port: wanted.port } : { path: wanted.path }, resolve);
  });
  const bound = server.address();
  const actual: SocketAddress = wanted.kind === 'tcp' && bound && typeof bound === 'object' ? { ...wanted, port: bound.port } : wanted;
  return new OneShotListener(server, actual);
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

class OneShotListener implements SocketListener {
  readonly name: string;
  readonly #server: net.Server;
  readonly #accepted: Promise<SocketTransport>;
  /** A connection not handed out by accept() yet. */
  #pending: SocketTransport | undefined;
  #connected = false;
  #fail!: (e: Error) => void;

  constructor(server: net.Server, readonly address: SocketAddress) {
    this.name = formatSocketAddress(address);
    this.#server = server;
    this.#accepted = new Promise<SocketTransport>((resolve, reject) => {
      this.#fail = reject;
      server.on('connection', (socket) => {
        if (this.#connected) return void socket.destroy();
        this.#connected = true;
        server.close();
        try {
          this.#pending = SocketTransport.adopt(this.name, socket);
          resolve(this.#pending);
        } catch (e) {
          socket.destroy();
          reject(e);
        }
      });
      server.on('error', (e) => reject(new MigrationTransportError(this.name, 'listening failed', { cause: e })));
    });
    // accept() may never be called (the migration was cancelled first): no unhandled rejection.
    this.#accepted.catch(() => undefined);
  }

  async accept(options: { readonly timeoutMs?: number } = {}): Promise<SocketTransport> {
    if (options.timeoutMs === undefined) return this.#take(await this.#accepted);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new MigrationTransportError(this.name, `no connection within ${options.timeoutMs} ms`)), options.timeoutMs);
    });
    try {
      return this.#take(await Promise.race([this.#accepted, timeout]));
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.#fail(new MigrationTransportError(this.name, 'listener closed'));
    this.#pending?.destroy();
    if (this.#server.listening) await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Hand the connection over: from now on closing the listener leaves it alone. */
  #take(transport: SocketTransport): SocketTransport {
    if (this.#pending === transport) this.#pending = undefined;
    return transport;
  }
}
