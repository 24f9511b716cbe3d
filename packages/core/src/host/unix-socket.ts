// An AF_UNIX stream socket on a raw fd through libc (koffi): listen, accept, connect, and
// sendmsg / recvmsg with SCM_RIGHTS, the one way to pass file descriptors between processes
// (Node's net.Socket cannot). Non-blocking; the owner watches it with `poll`.

import { ArgumentError } from '../errors/vmm-error-base.js';
import { HostError } from './host-error.js';
import { loadLibc, type FdPoll, type Libc, type PollEvents } from './linux-libc.js';

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_NOSIGNAL = 0x4000;
const MSG_CTRUNC = 0x8;
const MSG_CMSG_CLOEXEC = 0x4000_0000;
const SUN_PATH_MAX = 108;
/** Most fds one message passes (Linux's SCM_MAX_FD). */
export const UNIX_SOCKET_MAX_FDS = 253;

/** What one recvmsg returned. */
export interface UnixReceive {
  /** Bytes read into the buffer; 0 means the peer closed its end. */
  readonly bytes: number;
  /** The fds that came with them: the caller owns each one. */
  readonly fds: number[];
  /** The kernel dropped fds that did not fit the control buffer (MSG_CTRUNC). */
  readonly truncated: boolean;
}

/** An off-heap buffer: its address stays put, so it can be pointed to from a struct. */
const offHeap = (n: number): Uint8Array => new Uint8Array(new ArrayBuffer(n));
const cmsgSpace = (fds: number): number => 16 + ((fds * 4 + 7) & ~7);
/** struct msghdr on x86-64 / aarch64: name, namelen, iov, iovlen, control, controllen, flags. */
const MSGHDR_SIZE = 56;
const MSGHDR_CONTROLLEN = 40;
const MSGHDR_FLAGS = 48;

/** A 64-bit field from a bigint (an address). */
const setU64 = (dv: DataView, at: number, value: bigint): void => dv.setBigUint64(at, value, true);
/** A 64-bit length field from a number below 2^32 (no bigint on the hot path). */
function setLength(dv: DataView, at: number, value: number): void {
  dv.setUint32(at, value, true);
  dv.setUint32(at + 4, 0, true);
}

/** Fill the parts of a msghdr that never change: no name, one iovec, the control buffer. */
function pointHeader(hdr: DataView, iov: bigint, control: bigint): void {
  setU64(hdr, 16, iov);
  setLength(hdr, 24, 1);
  setU64(hdr, 32, control);
}

/**
 * A connected or listening AF_UNIX stream socket. Every failure is a HostError naming the call
 * and the socket's path (`endpoint`); EAGAIN is reported as a result (`undefined`), not thrown.
 */
export class UnixSocket {
  readonly #libc: Libc;
  #fd: number;
  // A msghdr, iovec and control buffer for each direction, reused by every call and filled
  // once where nothing changes: a round trip is a few µs, so per-call struct building shows.
  readonly #receiveHdr = offHeap(MSGHDR_SIZE);
  readonly #receiveIov = offHeap(16);
  readonly #receiveControl = offHeap(cmsgSpace(UNIX_SOCKET_MAX_FDS));
  readonly #receiveHdrView = new DataView(this.#receiveHdr.buffer);
  readonly #receiveIovView = new DataView(this.#receiveIov.buffer);
  /** The buffer the receive iovec points to now (its address is stable: off-heap). */
  #receiveInto: Uint8Array | undefined;
  readonly #sendHdr = offHeap(MSGHDR_SIZE);
  readonly #sendIov = offHeap(16);
  readonly #sendControl = offHeap(cmsgSpace(UNIX_SOCKET_MAX_FDS));
  readonly #sendHdrView = new DataView(this.#sendHdr.buffer);
  readonly #sendIovView = new DataView(this.#sendIov.buffer);
  readonly #sendControlView = new DataView(this.#sendControl.buffer);
  /** Where small or on-heap outgoing data is copied to, so that it has a fixed address. */
  #scratch = offHeap(4096);

  private constructor(fd: number, readonly endpoint: string, libc: Libc) {
    this.#fd = fd;
    this.#libc = libc;
    pointHeader(this.#receiveHdrView, libc.address(this.#receiveIov), libc.address(this.#receiveControl));
    pointHeader(this.#sendHdrView, libc.address(this.#sendIov), libc.address(this.#sendControl));
  }

  /** The socket's fd (-1 once closed). */
  get fd(): number {
    return this.#fd;
  }

  /** socket + bind + listen on `path` (which must not exist). */
  static listen(path: string, backlog = 8): UnixSocket {
    const libc = loadLibc();
    const s = UnixSocket.#create(libc, path);
    const addr = sockaddr(path);
    try {
      if (libc.sockets.bind(s.#fd, addr, addr.byteLength) < 0) s.#fail('bind');
      if (libc.sockets.listen(s.#fd, backlog) < 0) s.#fail('listen');
    } catch (e) {
      s.close();
      throw e;
    }
    return s;
  }

  /** socket + connect to the listener at `path`. */
  static connect(path: string): UnixSocket {
    const libc = loadLibc();
    const s = UnixSocket.#create(libc, path);
    const addr = sockaddr(path);
    if (libc.sockets.connect(s.#fd, addr, addr.byteLength) < 0) {
      const e = s.#error('connect');
      s.close();
      throw e;
    }
    return s;
  }

  /** A connected pair (socketpair), for a child process or tests. */
  static pair(): [UnixSocket, UnixSocket] {
    const libc = loadLibc();
    const sv = new Int32Array(2);
    if (libc.sockets.socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
      throw new HostError({ errno: libc.errno(), syscall: 'socketpair' });
    }
    return [new UnixSocket(sv[0]!, 'socketpair', libc), new UnixSocket(sv[1]!, 'socketpair', libc)];
  }

  /** Adopt a connected socket fd this process already owns (inherited, say); it is made non-blocking by the caller. */
  static adopt(fd: number, endpoint: string): UnixSocket {
    return new UnixSocket(fd, endpoint, loadLibc());
  }

  static #create(libc: Libc, path: string): UnixSocket {
    if (Buffer.byteLength(path) >= SUN_PATH_MAX) throw new ArgumentError(`socket path '${path}' is longer than ${SUN_PATH_MAX - 1} bytes`, 'path');
    const fd = libc.sockets.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new HostError({ errno: libc.errno(), syscall: 'socket', path });
    return new UnixSocket(fd, path, libc);
  }

  /** accept4 a connection; undefined when none is pending (EAGAIN). */
  accept(): UnixSocket | undefined {
    const fd = this.#libc.sockets.accept4(this.#fd, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (this.#libc.errno() === EAGAIN) return undefined;
      this.#fail('accept4');
    }
    return new UnixSocket(fd, this.endpoint, this.#libc);
  }

  /**
   * Send `data` with `fds` as SCM_RIGHTS (sendmsg; send(2) when there are none); returns the
   * bytes sent (the fds go with the first byte), or undefined on EAGAIN (nothing sent). The
   * caller keeps its own fds.
   */
  send(data: Uint8Array, fds: readonly number[] = []): number | undefined {
    if (fds.length > UNIX_SOCKET_MAX_FDS) throw new ArgumentError(`${fds.length} fds exceed SCM_MAX_FD (${UNIX_SOCKET_MAX_FDS})`, 'fds');
    // The data must sit in off-heap memory, whose address koffi passes as is. Small arrays live
    // on V8's heap (asking for their buffer would move them out), so they are copied.
    let buf = data;
    if (data.byteLength <= 64 || !(data.buffer instanceof ArrayBuffer)) {
      if (this.#scratch.byteLength < data.byteLength) this.#scratch = offHeap(data.byteLength);
      this.#scratch.set(data);
      buf = this.#scratch;
    }
    const n = fds.length === 0
      ? this.#libc.sockets.send(this.#fd, buf, data.byteLength, MSG_NOSIGNAL)
      : this.#sendWithFds(buf, data.byteLength, fds);
    if (n < 0) {
      if (this.#libc.errno() === EAGAIN) return undefined;
      this.#fail(fds.length === 0 ? 'send' : 'sendmsg');
    }
    return n;
  }

  #sendWithFds(buf: Uint8Array, length: number, fds: readonly number[]): number {
    setU64(this.#sendIovView, 0, this.#libc.address(buf));
    setLength(this.#sendIovView, 8, length);
    const dv = this.#sendControlView;
    const space = cmsgSpace(fds.length);
    this.#sendControl.fill(0, 0, space);
    setLength(dv, 0, 16 + 4 * fds.length);
    dv.setInt32(8, SOL_SOCKET, true);
    dv.setInt32(12, SCM_RIGHTS, true);
    for (let i = 0; i < fds.length; i++) dv.setInt32(16 + 4 * i, fds[i]!, true);
    setLength(this.#sendHdrView, MSGHDR_CONTROLLEN, space);
    return this.#libc.sockets.sendmsg(this.#fd, this.#sendHdr, MSG_NOSIGNAL);
  }

  /** recvmsg into `buf` (off-heap: see {@link UnixSocket.buffer}); undefined on EAGAIN. */
  receive(buf: Uint8Array, maxFds = UNIX_SOCKET_MAX_FDS): UnixReceive | undefined {
    if (buf !== this.#receiveInto) {
      setU64(this.#receiveIovView, 0, this.#libc.address(buf));
      setLength(this.#receiveIovView, 8, buf.byteLength);
      this.#receiveInto = buf;
    }
    const hdr = this.#receiveHdrView;
    // The kernel writes back how much control data it stored (and the flags): reset the room each call.
    setLength(hdr, MSGHDR_CONTROLLEN, cmsgSpace(Math.min(maxFds, UNIX_SOCKET_MAX_FDS)));
    const n = this.#libc.sockets.recvmsg(this.#fd, this.#receiveHdr, MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (this.#libc.errno() === EAGAIN) return undefined;
      this.#fail('recvmsg');
    }
    const controllen = hdr.getUint32(MSGHDR_CONTROLLEN, true);
    const flags = hdr.getInt32(MSGHDR_FLAGS, true);
    return { bytes: n, fds: controllen ? parseRights(this.#receiveControl, controllen) : [], truncated: (flags & MSG_CTRUNC) !== 0 };
  }

  /** A buffer recvmsg can fill: off-heap, so its address is stable. */
  static buffer(size: number): Uint8Array {
    return offHeap(size);
  }

  /** Watch the socket for readiness from the event loop (libuv poll: no busy polling). */
  poll(events: PollEvents, onEvent: (ready: PollEvents) => void): FdPoll {
    return this.#libc.poll(this.#fd, events, onEvent);
  }

  /** close(2); idempotent. Removing the socket's path is the listener owner's business ({@link unlinkSocketPath}). */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    if (this.#libc.close(fd) < 0) throw new HostError({ errno: this.#libc.errno(), syscall: 'close', fd, path: this.endpoint });
  }

  #error(syscall: string): HostError {
    return new HostError({ errno: this.#libc.errno(), syscall, fd: this.#fd, path: this.endpoint });
  }

  #fail(syscall: string): never {
    throw this.#error(syscall);
  }
}

const EAGAIN = 11;

/** unlink(2) a socket path; ENOENT is not an error. */
export function unlinkSocketPath(path: string): void {
  const libc = loadLibc();
  if (libc.unlink(path) < 0 && libc.errno() !== 2) throw new HostError({ errno: libc.errno(), syscall: 'unlink', path });
}

function sockaddr(path: string): Uint8Array {
  const addr = new Uint8Array(2 + SUN_PATH_MAX);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(Buffer.from(path), 2);
  return addr;
}

/** The fds of every SCM_RIGHTS control message in the first `length` bytes of `control`. */
function parseRights(control: Uint8Array, length: number): number[] {
  const fds: number[] = [];
  const dv = new DataView(control.buffer, control.byteOffset);
  let at = 0;
  while (at + 16 <= length) {
    const len = Number(dv.getBigUint64(at, true));
    if (len < 16 || at + len > length) break;
    if (dv.getInt32(at + 8, true) === SOL_SOCKET && dv.getInt32(at + 12, true) === SCM_RIGHTS) {
      for (let p = at + 16; p + 4 <= at + len; p += 4) fds.push(dv.getInt32(p, true));
    }
    at += (len + 7) & ~7;
  }
  return fds;
}
