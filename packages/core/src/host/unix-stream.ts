// A connected AF_UNIX stream socket as a byte stream that carries file descriptors both ways:
// non-blocking sendmsg / recvmsg with SCM_RIGHTS, driven by libuv's poll on the socket fd (never
// a busy loop), partial writes queued, EAGAIN waited out, the peer's close and failures ending
// the connection once. Message framing is the owner's (vfio-user's framer, QMP's JSON splitter).

import type { FdPoll } from './linux-libc.js';
import { loadLibc } from './linux-libc.js';
import { UnixSocket, unlinkSocketPath } from './unix-socket.js';

/** Why a stream ended other than by a clean close. */
export interface UnixStreamFailure {
  /** What failed: a send or receive call, or the peer passed more fds than one read takes. */
  readonly kind: 'send' | 'receive' | 'fds-truncated';
  /** The HostError of the failed call. */
  readonly cause?: unknown;
}

/** What a stream tells its owner. */
export interface UnixStreamHandlers {
  /**
   * Bytes arrived with the fds that came with them (the fds arrived with the chunk's last byte:
   * Linux ends a recvmsg right after the one skb carrying fds it reads). `bytes` is valid only
   * during the call (the stream reuses its buffer). The handler owns `fds` from now on: it closes
   * every one it does not keep, also when it throws.
   */
  data(bytes: Uint8Array, fds: number[]): void;
  /**
   * The stream ended: `failure` undefined when the peer closed or `close()` was called. Called
   * once; no data follows it.
   */
  closed(failure?: UnixStreamFailure): void;
}

interface Outgoing {
  readonly bytes: Uint8Array;
  sent: number;
  fds: readonly number[];
}

/** One connected socket as a byte stream with fds. It owns the socket and closes it. */
export class UnixStream {
  readonly #socket: UnixSocket;
  readonly #queue: Outgoing[] = [];
  readonly #buffer: Uint8Array;
  #queuedBytes = 0;
  #poll: FdPoll | undefined;
  #handlers: UnixStreamHandlers | undefined;
  #open = true;
  /** Whether the poll watches for writability (only while output waits). */
  #watchingWrites = false;
  /** Close once the queued output is written ({@link UnixStream.end}). */
  #ending = false;

  constructor(socket: UnixSocket, readSize = 64 * 1024) {
    this.#socket = socket;
    this.#buffer = UnixSocket.buffer(readSize);
  }

  /** Connect to the listener at `path` (HostError naming the path when it cannot). */
  static connect(path: string, readSize?: number): UnixStream {
    return new UnixStream(UnixSocket.connect(path), readSize);
  }

  get endpoint(): string {
    return this.#socket.endpoint;
  }

  get open(): boolean {
    return this.#open;
  }

  /** Bytes queued that the peer has not taken yet (a peer that stops reading makes it grow). */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Start delivering incoming data to `handlers`; called once. */
  start(handlers: UnixStreamHandlers): void {
    this.#handlers = handlers;
    this.#poll = this.#socket.poll({ readable: true, writable: false }, (ready) => {
      if (ready.readable) this.#readable();
      if (ready.writable && this.#open) this.#flush();
    });
    // Output queued before the start waits for writability like any other.
    if (this.#queue.length) this.#flush();
  }

  /**
   * Queue `bytes` with `fds` (which go with the first byte). Never blocks; the caller keeps its
   * fds (the peer gets duplicates). On a closed stream nothing is sent (the owner learnt of the
   * end through `closed`); a send that fails ends the stream.
   */
  send(bytes: Uint8Array, fds: readonly number[] = []): void {
    if (!this.#open || this.#ending) return;
    if (this.#queue.length) {
      this.#queue.push({ bytes, sent: 0, fds });
      this.#queuedBytes += bytes.byteLength;
      return;
    }
    // Nothing waits: write at once, and queue only what the socket does not take.
    let n;
    try {
      n = this.#socket.send(bytes, fds);
    } catch (e) {
      this.#end({ kind: 'send', cause: e });
      return;
    }
    if (n === bytes.byteLength) return;
    // The fds went with the first bytes the kernel took, if it took any.
    this.#queue.push({ bytes, sent: n ?? 0, fds: n === undefined ? fds : [] });
    this.#queuedBytes += bytes.byteLength - (n ?? 0);
    this.#watchWrites();
  }

  /**
   * Close once what is queued is written (a last answer before hanging up); nothing more is
   * sent or delivered meanwhile. A peer that never reads keeps it open until `close()`.
   */
  end(): void {
    if (!this.#open) return;
    this.#ending = true;
    if (this.#queue.length === 0) {
      this.#end(undefined);
      return;
    }
    // Stop reading: a level-triggered poll would otherwise fire for input no one takes.
    this.#watchingWrites = true;
    this.#poll?.update({ readable: false, writable: true });
  }

  /** Close the stream (idempotent): pending output is dropped, `closed()` is called. */
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
        this.#queuedBytes -= n;
        if (head.sent === head.bytes.byteLength) this.#queue.shift();
        else break;
      }
    } catch (e) {
      this.#end({ kind: 'send', cause: e });
      return;
    }
    if (this.#ending && this.#queue.length === 0) {
      this.#end(undefined);
      return;
    }
    this.#watchWrites();
  }

  /** Watch for writability exactly while output waits. */
  #watchWrites(): void {
    // Restarting libuv's poll costs more than the send itself: only when writability matters anew.
    const waiting = this.#queue.length > 0;
    if (waiting !== this.#watchingWrites && this.#poll) {
      this.#watchingWrites = waiting;
      this.#poll.update({ readable: !this.#ending, writable: waiting });
    }
  }

  /** Drain what is readable now (the poll fires again for more). */
  #readable(): void {
    while (this.#open && !this.#ending) {
      let got;
      try {
        got = this.#socket.receive(this.#buffer);
      } catch (e) {
        this.#end({ kind: 'receive', cause: e });
        return;
      }
      if (!got) return;
      const drained = got.bytes < this.#buffer.byteLength;
      if (got.bytes === 0 && got.fds.length === 0) {
        this.#end(undefined);
        return;
      }
      if (got.truncated) {
        closeReceivedFds(got.fds);
        this.#end({ kind: 'fds-truncated' });
        return;
      }
      this.#handlers!.data(this.#buffer.subarray(0, got.bytes), got.fds);
      // A short read took all there was (or stopped at fds); the level-triggered poll fires
      // again for anything that arrives later, which saves a recvmsg that would say EAGAIN.
      if (drained) return;
    }
  }

  #end(failure: UnixStreamFailure | undefined): void {
    if (!this.#open) return;
    this.#open = false;
    this.#poll?.close();
    this.#poll = undefined;
    this.#queue.length = 0;
    this.#queuedBytes = 0;
    try {
      this.#socket.close();
    } catch {
      // close releases the fd even when it reports an error; nothing is left to undo.
    }
    this.#handlers?.closed(failure);
  }
}

/** Close fds this process received and does not keep (errors ignored: the fds are released anyway). */
export function closeReceivedFds(fds: readonly number[]): void {
  const libc = loadLibc();
  for (const fd of fds) libc.close(fd);
}

/**
 * A listening socket that hands each accepted connection to `onConnection` as a stream (not yet
 * started). Owns the socket and its path: `close()` removes both.
 */
export class UnixStreamListener {
  readonly #socket: UnixSocket;
  readonly #poll: FdPoll;
  #open = true;

  private constructor(readonly path: string, onConnection: (stream: UnixStream) => void) {
    this.#socket = UnixSocket.listen(path);
    this.#poll = this.#socket.poll({ readable: true, writable: false }, () => {
      for (let s = this.#accept(); s; s = this.#accept()) onConnection(new UnixStream(s));
    });
  }

  /** Listen at `path` (which must not exist yet); HostError naming the path when it cannot. */
  static listen(path: string, onConnection: (stream: UnixStream) => void): UnixStreamListener {
    return new UnixStreamListener(path, onConnection);
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
