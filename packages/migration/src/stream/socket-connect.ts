// Opening socket transports: the destination listens and accepts one connection (QEMU's
// `-incoming tcp:...`), the source connects (`migrate tcp:...`). Errors name the address.

import net from 'node:net';
import { formatSocketAddress, parseSocketAddress, type SocketAddress } from './socket-address.js';
import { SocketTransport } from './socket-transport.js';
import { MigrationTransportError } from './stream-errors.js';

// Node's write buffer per socket before `write` waits: big enough for a few 1 MiB RAM records.
const WRITE_HIGH_WATER = 4 << 20;

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
  const server = net.createServer({ allowHalfOpen: true, highWaterMark: WRITE_HIGH_WATER });
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
 * @throws MigrationTransportError naming the address when the connection fails or takes longer than `timeoutMs`.
 */
export function connectMigration(address: string | SocketAddress, options: { readonly timeoutMs?: number } = {}): Promise<SocketTransport> {
  const target = parseSocketAddress(address);
  const name = formatSocketAddress(target);
  return new Promise((resolve, reject) => {
    const where = target.kind === 'tcp' ? { host: target.host, port: target.port } : { path: target.path };
    // net.Socket passes highWaterMark on to its stream (the typings do not list it).
    const opts = { ...where, allowHalfOpen: true, highWaterMark: WRITE_HIGH_WATER };
    const socket = net.connect(opts as net.NetConnectOpts);
    const fail = (detail: string, cause?: unknown): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(new MigrationTransportError(name, detail, { cause }));
    };
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => fail(`no connection within ${options.timeoutMs} ms`), options.timeoutMs);
    socket.once('error', (e) => fail('cannot connect', e));
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(new SocketTransport(socket, name));
    });
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
        this.#pending = new SocketTransport(socket, this.name);
        server.close();
        resolve(this.#pending);
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
