// The vfio-user transport over an AF_UNIX stream socket: the byte stream with fds of
// host/unix-stream.ts cut into whole messages by the framer; peer close and protocol errors end
// the connection cleanly, and every fd received is given to a message or closed.

import type { VmmError } from '../errors/vmm-error-base.js';
import type { UnixSocket } from '../host/unix-socket.js';
import { closeReceivedFds, UnixStream, UnixStreamListener, type UnixStreamFailure } from '../host/unix-stream.js';
import { VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE, VFIO_USER_FD_LIMIT } from './constants.js';
import { deliverFramed, VfioUserFramer, type FramedDelivery } from './framer.js';
import type { VfioUserLimits } from './message.js';
import type { VfioUserTransport, VfioUserTransportHandlers } from './transport.js';
import { VfioUserProtocolError, VfioUserTransportError } from './vfio-user-errors.js';

/** What a connection accepts by default: the largest data transfer plus room for its header. */
export const DEFAULT_LIMITS: VfioUserLimits = { maxMessageSize: VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE + 4096, maxFds: VFIO_USER_FD_LIMIT };

/** One connected socket as a message transport: a byte stream with fds, cut into messages. It owns the stream. */
export class SocketTransport implements VfioUserTransport {
  readonly #stream: UnixStream;
  readonly #framer: VfioUserFramer;
  #handlers: VfioUserTransportHandlers | undefined;
  #open = true;
  /** Where framed messages go: made once, not for every chunk read. */
  readonly #delivery: FramedDelivery = {
    open: () => this.#open,
    deliver: (m) => this.#handlers!.message(m),
    discard: closeReceivedFds,
  };

  constructor(socket: UnixSocket | UnixStream, limits: VfioUserLimits = DEFAULT_LIMITS) {
    this.#stream = socket instanceof UnixStream ? socket : new UnixStream(socket);
    this.#framer = new VfioUserFramer(limits);
  }

  /** Connect to a vfio-user server listening at `path`. */
  static connect(path: string, limits?: VfioUserLimits): SocketTransport {
    try {
      return new SocketTransport(UnixStream.connect(path), limits);
    } catch (e) {
      throw new VfioUserTransportError(path, 'cannot connect', { cause: e });
    }
  }

  get endpoint(): string {
    return this.#stream.endpoint;
  }

  get open(): boolean {
    return this.#open;
  }

  start(handlers: VfioUserTransportHandlers): void {
    this.#handlers = handlers;
    this.#stream.start({
      data: (bytes, fds) => this.#data(bytes, fds),
      closed: (failure) => this.#end(failure && this.#describe(failure)),
    });
  }

  send(message: Uint8Array, fds: readonly number[] = []): void {
    if (!this.#open) throw new VfioUserTransportError(this.endpoint, 'send on a closed connection');
    this.#stream.send(message, fds);
  }

  close(): void {
    this.#end(undefined);
  }

  #data(bytes: Uint8Array, fds: number[]): void {
    if (!this.#open) {
      closeAll(fds);
      return;
    }
    const broken = deliverFramed(this.#framer, bytes, fds, this.#delivery);
    if (broken) this.#end(broken);
  }

  #describe(failure: UnixStreamFailure): VmmError {
    if (failure.kind === 'fds-truncated') return new VfioUserProtocolError('header', 'the peer sent more fds than a message may carry (control data truncated)');
    return new VfioUserTransportError(this.endpoint, `${failure.kind} failed`, { cause: failure.cause });
  }

  #end(error: VmmError | undefined): void {
    if (!this.#open) return;
    this.#open = false;
    // The peer closing inside a message is an error even though the stream ended cleanly.
    if (!error && this.#stream.open === false && this.#framer.pendingFds.length > 0) {
      error = new VfioUserTransportError(this.endpoint, 'the peer closed inside a message');
    }
    closeAll(this.#framer.takePendingFds());
    this.#stream.close();
    this.#handlers?.closed(error);
  }
}

/** Close fds this process received and does not keep (errors ignored: the fds are released anyway). */
export const closeAll = closeReceivedFds;

/**
 * A listening socket that hands each accepted connection to `onConnection` as a transport.
 * Owns the socket and its path: `close()` removes both.
 */
export class SocketListener {
  readonly #listener: UnixStreamListener;

  private constructor(readonly path: string, onConnection: (t: SocketTransport) => void, limits?: VfioUserLimits) {
    try {
      this.#listener = UnixStreamListener.listen(path, (stream) => onConnection(new SocketTransport(stream, limits)));
    } catch (e) {
      throw new VfioUserTransportError(path, 'cannot listen', { cause: e });
    }
  }

  /** Listen at `path` (which must not exist yet). */
  static listen(path: string, onConnection: (t: SocketTransport) => void, limits?: VfioUserLimits): SocketListener {
    return new SocketListener(path, onConnection, limits);
  }

  /** Stop listening and remove the socket path. */
  close(): void {
    this.#listener.close();
  }
}
