// The libc bindings of LinuxHost: the only module that loads koffi.
// Fixed prototypes (not variadic) where possible: they are faster and pass integers exactly.

import koffi from 'koffi';

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
}

/** mmap's MAP_FAILED, `(void *)-1`, as koffi returns pointers. */
export const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

let libc: Libc | undefined;

/** Load libc once per process. */
export function loadLibc(): Libc {
  if (libc) return libc;
  const lib = koffi.load('libc.so.6');
  const open = lib.func('int open(const char *path, int flags, ...)');
  const mmap = lib.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, int64_t off)');
  const munmap = lib.func('int munmap(void *addr, size_t len)');
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
    address: (bytes) => BigInt(koffi.address(bytes) as bigint),
    pollReadable: (fd, onReadable) => {
      // koffi.node.poll is libuv's uv_poll_t (undocumented in koffi 3, but stable in use here).
      const handle = koffi.node.poll(fd, { readable: true, writable: false, disconnect: false }, () => onReadable());
      return () => handle.close();
    },
  };
  return libc;
}
