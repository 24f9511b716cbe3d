// The vfio-user transport over an AF_UNIX stream socket: non-blocking sendmsg / recvmsg with
// SCM_RIGHTS, driven by libuv's poll on the socket fd (never a busy loop), with partial writes
// queued, EAGAIN waited out, peer close and protocol errors ending the connection cleanly.

import type { VmmError } from '../errors/vmm-error-base.js';
import type { FdPoll } from '../host/linux-libc.js';
import { loadLibc } from '../host/linux-libc.js';
import { UnixSocket, unlinkSocketPath } from '../host/unix-socket.js';
import { VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE, VFIO_USER_FD_LIMIT } from './constants.js';
import { VfioUserFramer } from './framer.js';
import type { VfioUserLimits } from './message.js';
import type { VfioUserTransport, VfioUserTransportHandlers } from './transport.js';
import { VfioUserProtocolError, VfioUserTransportError } from './vfio-user-errors.js';

/** What a connection accepts by default: the largest data transfer plus room for its header. */
export const DEFAULT_LIMITS: VfioUserLimits = { maxMessageSize: VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE + 4096, maxFds: VFIO_USER_FD_LIMIT };

interface Outgoing {
  readonly bytes: Uint8Array;
  sent: number;
  fds: readonly number[];
}

/** One connected socket as a message transport. It owns the socket and closes it. */
export class SocketTransport implements VfioUserTransport {
  readonly #socket: UnixSocket;
  readonly #framer: VfioUserFramer;
  readonly #queue: Outgoing[] = [];
  readonly #buffer = UnixSocket.buffer(64 * 1024);
  #poll: FdPoll | undefined;
  #handlers: VfioUserTransportHandlers | undefined;
  #open = true;

  constructor(socket: UnixSocket, limits: VfioUserLimits = DEFAULT_LIMITS) {
    this.#socket = socket;
    this.#framer = new VfioUserFramer(limits);
  }

  /** Connect to a vfio-user server listening at `path`. */
  static connect(path: string, limits?: VfioUserLimits): SocketTransport {
    try {
      return new SocketTransport(UnixSocket.connect(path), limits);
    } catch (e) {
      throw new VfioUserTransportError(path, 'cannot connect', { cause: e });
    }
  }

  get endpoint(): string {
    return this.#socket.endpoint;
  }

  get open(): boolean {
    return this.#open;
  }

  start(handlers: VfioUserTransportHandlers): void {
    this.#handlers = handlers;
    this.#poll = this.#socket.poll({ readable: true, writable: false }, (ready) => {
      if (ready.readable) this.#readable();
      if (ready.writable && this.#open) this.#flush();
    });
  }

  send(message: Uint8Array, fds: readonly number[] = []): void {
    if (!this.#open) throw new VfioUserTransportError(this.endpoint, 'send on a closed connection');
    this.#queue.push({ bytes: message, sent: 0, fds });
    if (this.#queue.length === 1) this.#flush();
  }

  close(): void {
    this.#end(undefined);
  }

  /** Write what the socket takes now; wait for writability for the rest. */
  #flush(): void {
    try {
      while (this.#queue.length) {
        const head = this.#queue[0]!;
        const n = this.#socket.send(head.bytes.subarray(head.sent), head.fds);
        if (n === undefined) break;
        // The fds went with the first bytes the kernel took.
        head.fds = [];
        head.sent += n;
        if (head.sent === head.bytes.byteLength) this.#queue.shift();
        else break;
      }
    } catch (e) {
      this.#end(new VfioUserTransportError(this.endpoint, 'send failed', { cause: e }));
      return;
    }
    this.#poll?.update({ readable: true, writable: this.#queue.length > 0 });
  }

  /** Drain what is readable now (the poll fires again for more). */
  #readable(): void {
    while (this.#open) {
      let got;
      try {
        got = this.#socket.receive(this.#buffer);
      } catch (e) {
        this.#end(new VfioUserTransportError(this.endpoint, 'receive failed', { cause: e }));
        return;
      }
      if (!got) return;
      if (got.bytes === 0 && got.fds.length === 0) {
        const pending = this.#framer.pendingFds.length > 0;
        this.#end(pending ? new VfioUserTransportError(this.endpoint, 'the peer closed inside a message') : undefined);
        return;
      }
      if (got.truncated) {
        closeAll(got.fds);
        this.#end(new VfioUserProtocolError('header', 'the peer sent more fds than a message may carry (control data truncated)'));
        return;
      }
      let messages;
      try {
        messages = this.#framer.push(this.#buffer.subarray(0, got.bytes), got.fds);
      } catch (e) {
        this.#end(e as VmmError);
        return;
      }
      for (const m of messages) {
        if (!this.#open) closeAll(m.fds);
        else this.#handlers!.message(m);
      }
    }
  }

  #end(error: VmmError | undefined): void {
    if (!this.#open) return;
    this.#open = false;
    this.#poll?.close();
    this.#poll = undefined;
    this.#queue.length = 0;
    closeAll(this.#framer.takePendingFds());
    try {
      this.#socket.close();
    } catch {
      // close releases the fd even when it reports an error; nothing is left to undo.
    }
    this.#handlers?.closed(error);
  }
}

/** Close fds this process received and does not keep (errors ignored: the fds are released anyway). */
export function closeAll(fds: readonly number[]): void {
  const libc = loadLibc();
  for (const fd of fds) libc.close(fd);
}

/**
 * A listening socket that hands each accepted connection to `onConnection` as a transport.
 * Owns the socket and its path: `close()` removes both.
 */
export class SocketListener {
  readonly #socket: UnixSocket;
  readonly #poll: FdPoll;
  #open = true;

  private constructor(readonly path: string, onConnection: (t: SocketTransport) => void, limits?: VfioUserLimits) {
    try {
      this.#socket = UnixSocket.listen(path);
    } catch (e) {
      throw new VfioUserTransportError(path, 'cannot listen', { cause: e });
    }
    this.#poll = this.#socket.poll({ readable: true, writable: false }, () => {
      for (let s = this.#accept(); s; s = this.#accept()) onConnection(new SocketTransport(s, limits));
    });
  }

  /** Listen at `path` (which must not exist yet). */
  static listen(path: string, onConnection: (t: SocketTransport) => void, limits?: VfioUserLimits): SocketListener {
    return new SocketListener(path, onConnection, limits);
  }

  #accept(): UnixSocket | undefined {
    if (!this.#open) return undefined;
    try {
      return this.#socket.accept();
    } catch {
      // A connection that died before accept (ECONNABORTED) is the client's loss, not the listener's.
      return undefined;
    }
  }

  /** Stop listening and remove the socket path. */
  close(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#poll.close();
    this.#socket.close();
    unlinkSocketPath(this.path);
  }
}
