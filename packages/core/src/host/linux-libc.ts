// The libc bindings of LinuxHost: the only module that loads koffi.
// Fixed prototypes (not variadic) where possible: they are faster and pass integers exactly.

import koffi from 'koffi';
import { libuvPoll, type StartPoll } from './uv-poll.js';

/** The libc functions LinuxHost calls; each returns -1 (or MAP_FAILED) with errno set. */
export interface Libc {
  open(path: string, flags: number): number;
  close(fd: number): number;
  ioctlPtr(fd: number, request: number, arg: Uint8Array): number;
  ioctlInt(fd: number, request: number, arg: number | bigint): number;
  read(fd: number, buf: Uint8Array, count: number): number;
  write(fd: number, buf: Uint8Array, count: number): number;
  pread(fd: number, buf: Uint8Array, count: number, offset: bigint): number;
  pwrite(fd: number, buf: Uint8Array, count: number, offset: bigint): number;
  mmap(length: number, prot: number, flags: number, fd: number, offset: bigint): bigint;
  munmap(addr: bigint, length: number): number;
  eventfd(initval: number, flags: number): number;
  /** sysconf(3). */
  sysconf(name: number): number;
  /** The calling thread's errno, read at once: anything in between (even console output) may change it. */
  errno(): number;
  /** A Uint8Array over `length` bytes of process memory at `addr` (no copy). */
  view(addr: bigint, length: number): Uint8Array;
  /** The address of a typed array's first byte. */
  address(bytes: Uint8Array): bigint;
  /** Call `onReadable` from libuv's poll phase while `fd` is readable; returns the stop function. */
  pollReadable(fd: number, onReadable: () => void): () => void;
  /** fcntl(fd, F_DUPFD_CLOEXEC, 0). */
  dup(fd: number): number;
  memfdCreate(name: string, flags: number): number;
  ftruncate(fd: number, length: bigint): number;
  unlink(path: string): number;
  /** The socket calls of AF_UNIX transports; structs are bytes, pointers addresses of off-heap buffers. */
  readonly sockets: SocketLibc;
  /** libuv's poll on `fd` for the events asked, changeable while it lives. */
  poll(fd: number, events: PollEvents, onEvent: (ready: PollEvents) => void): FdPoll;
}

/** Which readiness a poll reports. */
export interface PollEvents {
  readonly readable: boolean;
  readonly writable: boolean;
}

/** A live libuv poll handle. */
export interface FdPoll {
  /** Change the events watched (both false stops watching without closing). */
  update(events: PollEvents): void;
  close(): void;
}

/** socket(2) and friends, returning -1 with errno set. */
export interface SocketLibc {
  socket(domain: number, type: number, protocol: number): number;
  socketpair(domain: number, type: number, protocol: number, sv: Int32Array): number;
  bind(fd: number, addr: Uint8Array, len: number): number;
  listen(fd: number, backlog: number): number;
  accept4(fd: number, flags: number): number;
  connect(fd: number, addr: Uint8Array, len: number): number;
  /** send(2) of the first `length` bytes of `buf` (off-heap). */
  send(fd: number, buf: Uint8Array, length: number, flags: number): number;
  sendmsg(fd: number, msghdr: Uint8Array, flags: number): number;
  recvmsg(fd: number, msghdr: Uint8Array, flags: number): number;
}

/** mmap's MAP_FAILED, `(void *)-1`, as koffi returns pointers. */
export const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

/** fcntl's F_DUPFD_CLOEXEC. */
const F_DUPFD_CLOEXEC = 1030;

let libc: Libc | undefined;

/** Load libc once per process. */
export function loadLibc(): Libc {
  if (libc) return libc;
  const lib = koffi.load('libc.so.6');
  const open = lib.func('int open(const char *path, int flags, ...)');
  const mmap = lib.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)');
  const munmap = lib.func('int munmap(void *addr, size_t len)');
  const fcntl = lib.func('int fcntl(int fd, int cmd, ...)');
  const accept4 = lib.func('int accept4(int fd, void *addr, void *len, int flags)');
  const address = (bytes: Uint8Array): bigint => BigInt(koffi.address(bytes) as bigint);
  const poll = libuvPoll(koffi, address) ?? koffiPoll;
  libc = {
    open: (path, flags) => open(path, flags),
    close: lib.func('int close(int fd)'),
    ioctlPtr: lib.func('int ioctl(int fd, unsigned long request, void *arg)'),
    ioctlInt: lib.func('int ioctl(int fd, unsigned long request, unsigned long arg)'),
    read: lib.func('long read(int fd, void *buf, size_t count)'),
    write: lib.func('long write(int fd, const void *buf, size_t count)'),
    pread: lib.func('long pread(int fd, void *buf, size_t count, int64_t offset)'),
    pwrite: lib.func('long pwrite(int fd, const void *buf, size_t count, int64_t offset)'),
    mmap: (length, prot, flags, fd, offset) => BigInt(mmap(null, length, prot, flags, fd, offset) ?? 0n),
    munmap: (addr, length) => munmap(addr, length),
    eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
    sysconf: lib.func('long sysconf(int name)'),
    errno: () => koffi.errno(),
    view: (addr, length) => (length === 0 ? new Uint8Array(0) : new Uint8Array(koffi.view(addr, length))),
    address,
    pollReadable: (fd, onReadable) => {
      const handle = poll(fd, { readable: true, writable: false }, () => onReadable());
      return () => handle.close();
    },
    dup: (fd) => fcntl(fd, F_DUPFD_CLOEXEC, 'int', 0),
    memfdCreate: lib.func('int memfd_create(const char *name, unsigned int flags)'),
    ftruncate: lib.func('int ftruncate(int fd, int64_t length)'),
    unlink: lib.func('int unlink(const char *path)'),
    sockets: {
      socket: lib.func('int socket(int domain, int type, int protocol)'),
      socketpair: lib.func('int socketpair(int domain, int type, int protocol, _Out_ int *sv)'),
      bind: lib.func('int bind(int fd, const void *addr, uint32_t len)'),
      listen: lib.func('int listen(int fd, int backlog)'),
      accept4: (fd, flags) => accept4(fd, null, null, flags),
      connect: lib.func('int connect(int fd, const void *addr, uint32_t len)'),
      send: lib.func('long send(int fd, void *buf, size_t len, int flags)'),
      sendmsg: lib.func('long sendmsg(int fd, void *msg, int flags)'),
      recvmsg: lib.func('long recvmsg(int fd, void *msg, int flags)'),
    },
    poll,
  };
  return libc;
}

/** koffi.node.poll (libuv's uv_poll_t, undocumented in koffi 3 but stable in use here): where {@link libuvPoll} cannot be used. */
export const koffiPoll: StartPoll = (fd, events, onEvent) => {
  // koffi calls back with (status, events), whatever its typings say; a failed poll (status
  // < 0) is reported as readable so that the next recvmsg reports the socket's error.
  const callback = ((status: number, ev: PollEvents) =>
    onEvent(status < 0 ? { readable: true, writable: false } : ev)) as unknown as (ev: PollEvents) => void;
  const handle = koffi.node.poll(fd, { ...events, disconnect: false }, callback);
  return {
    update: (next) => {
      if (next.readable || next.writable) handle.start({ ...next, disconnect: false }, callback);
      else handle.stop();
    },
    close: () => handle.close(),
  };
};
