// SimHost: the host-kernel port over an in-process model of Linux's VFIO and IOMMUFD uAPI,
// with test hooks to drive device DMA, inject faults and count what is left behind.

import {
  ArgumentError, closeReceivedFds, ERRNO, HostError, type HostErrorDetails, type HostKernel, type HostMapping,
} from '@vmmkit/core';
import { MAP_ANONYMOUS, MAP_FIXED, MFD_ALLOW_SEALING, MFD_CLOEXEC, MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE, ioctlName } from '@vmmkit/core/uapi';
import type { SimHostConfig } from './config.js';
import { AttrFile, DirFile } from './kernel/attr-file.js';
import { EventFdFile } from './kernel/eventfd-file.js';
import { MemfdFile } from './kernel/memfd-file.js';
import { ProcessFdFile } from './kernel/process-fd-file.js';
import type { SimCall, SimFault, SimSyscall } from './kernel/fault-injector.js';
import { fail, SimErrno } from './kernel/sim-errno.js';
import { SimKernel } from './kernel/sim-kernel.js';
import { buildMachine } from './machine-builder.js';
import { anonymousBacking, MappingBacking, ViewBacking } from './memory/backing.js';

const O_ACCMODE = 0o3;
const PAGE = 4096n;

/** What `census()` reports: open fds and live kernel objects by kind. */
export interface SimCensus {
  readonly fds: number;
  readonly objects: Record<string, number>;
}

/**
 * A faithful in-process model of the Linux VFIO + IOMMUFD uAPI, behind the same `HostKernel`
 * port as `LinuxHost`: the same structs in, the same results and errnos out.
 */
export class SimHost implements HostKernel {
  /** The simulated kernel: machine objects for white-box tests and device models. */
  readonly kernel: SimKernel;
  /** The simulated host has x86-64's 4 KiB pages (its IO page tables and bitmaps are modelled on them). */
  readonly pageSize = Number(PAGE);

  constructor(config: SimHostConfig = {}) {
    this.kernel = new SimKernel(config.features, config.fdLimit, config.transparentHugePages, config.process);
    buildMachine(this.kernel, config);
  }

  open(path: string, flags: number): number {
    return this.#syscall({ syscall: 'open', path }, () => {
      this.#inject({ syscall: 'open' });
      const node = this.kernel.fs.lookup(path);
      if (node.type === 'chr') return this.kernel.fds.install(node.open(flags), path);
      if ((flags & O_ACCMODE) !== 0) fail(node.type === 'dir' ? 'EISDIR' : 'EACCES');
      return this.kernel.fds.install(node.type === 'dir' ? new DirFile() : new AttrFile((node as { content: () => string }).content), path);
    });
  }

  close(fd: number): void {
    this.#syscall({ syscall: 'close', fd }, () => {
      // Linux releases the fd even when close reports an error (EIO, EINTR): so does an injected one.
      this.kernel.fds.close(fd);
      this.#inject({ syscall: 'close' });
    });
  }

  ioctl(fd: number, request: number, arg: Uint8Array | number | bigint = 0): number {
    const file = this.#file('ioctl', fd, request);
    const name = file.kind ? ioctlName(request, file.kind) : ioctlName(request);
    return this.#syscall({ syscall: 'ioctl', fd, request, ioctl: name }, () => {
      this.#inject({ syscall: 'ioctl', request, kind: file.kind });
      return file.ioctl(request, arg);
    });
  }

  read(fd: number, buf: Uint8Array): number {
    return this.#syscall({ syscall: 'read', fd }, () => this.#injectOn('read', fd).read(buf));
  }

  write(fd: number, buf: Uint8Array): number {
    return this.#syscall({ syscall: 'write', fd }, () => this.#injectOn('write', fd).write(buf));
  }

  pread(fd: number, buf: Uint8Array, offset: bigint): number {
    return this.#syscall({ syscall: 'pread', fd }, () => {
      const file = this.#injectOn('pread', fd);
      if (offset < 0n) fail('EINVAL');
      return file.pread(buf, offset);
    });
  }

  pwrite(fd: number, buf: Uint8Array, offset: bigint): number {
    return this.#syscall({ syscall: 'pwrite', fd }, () => {
      const file = this.#injectOn('pwrite', fd);
      if (offset < 0n) fail('EINVAL');
      return file.pwrite(buf, offset);
    });
  }

  mmap(length: number, prot: number, flags: number, fd: number, offset: bigint): HostMapping {
    return this.#syscall({ syscall: 'mmap', fd: fd >= 0 ? fd : undefined }, () => {
      this.#inject({ syscall: 'mmap', kind: fd >= 0 ? this.kernel.fds.get(fd).kind : undefined });
      const type = flags & (MAP_SHARED | MAP_PRIVATE);
      if (type !== MAP_SHARED && type !== MAP_PRIVATE) fail('EINVAL', 'exactly one of MAP_SHARED and MAP_PRIVATE');
      if (flags & MAP_FIXED) fail('EINVAL', 'the port has no address to fix a mapping at');
      if (!Number.isSafeInteger(length) || length <= 0) fail('EINVAL', 'length must be positive');
      if (offset % PAGE !== 0n || offset < 0n) fail('EINVAL', 'offset must be page aligned');
      if (flags & MAP_ANONYMOUS) return this.kernel.memory.map(length, prot, anonymousBacking(length));
      const m = this.kernel.fds.get(fd).mmap(length, prot, flags, offset);
      return this.kernel.memory.map(length, prot, m.backing, m.offset, m.onUnmap);
    });
  }

  eventfd(initval: number, flags: number): number {
    return this.#syscall({ syscall: 'eventfd' }, () => {
      this.#inject({ syscall: 'eventfd' });
      if (!Number.isInteger(initval) || initval < 0 || initval > 0xffffffff) fail('EINVAL');
      return this.kernel.fds.install(new EventFdFile(initval, flags, this.kernel.census));
    });
  }

  dup(fd: number): number {
    return this.#syscall({ syscall: 'fcntl', fd }, () => {
      const file = this.#injectOn('dup', fd);
      return this.kernel.fds.install(file);
    });
  }

  /**
   * Adopt a descriptor of the real process (one a client passed over a real socket): the
   * simulated kernel gives it an fd of its own, whose /proc/self/fd link names the real file, and
   * closes the real one when that fd's last reference goes. Ownership passes in every case: the
   * real fd is closed when adoption fails (EMFILE in the simulated table, say).
   * @throws HostError when the simulated kernel cannot install it.
   */
  adoptProcessFd(realFd: number): number {
    let file: ProcessFdFile;
    try {
      file = new ProcessFdFile(realFd, this.kernel.census);
    } catch (e) {
      closeReceivedFds([realFd]);
      throw new HostError({ errno: ERRNO.EBADF, syscall: 'readlink', path: `/proc/self/fd/${realFd}` }, { cause: e });
    }
    return this.#syscall({ syscall: 'fcntl', fd: realFd }, () => {
      try {
        return this.kernel.fds.install(file, file.target);
      } catch (e) {
        file.discard();
        throw e;
      }
    });
  }

  memfdCreate(name: string, flags: number): number {
    return this.#syscall({ syscall: 'memfd_create' }, () => {
      this.#inject({ syscall: 'memfd_create' });
      if (new TextEncoder().encode(name).byteLength > 249) fail('EINVAL', 'memfd name longer than 249 bytes');
      if (flags & ~(MFD_CLOEXEC | MFD_ALLOW_SEALING)) fail('EINVAL', `memfd flags 0x${flags.toString(16)}`);
      return this.kernel.fds.install(new MemfdFile(this.kernel.census), `/memfd:${name} (deleted)`);
    });
  }

  ftruncate(fd: number, length: bigint): void {
    this.#syscall({ syscall: 'ftruncate', fd }, () => {
      const file = this.#injectOn('ftruncate', fd);
      if (!(file instanceof MemfdFile)) fail('EINVAL', 'sim: only memfds can be truncated');
      file.truncate(length);
    });
  }

  readlink(path: string): string {
    return this.#syscall({ syscall: 'readlink', path }, () => {
      this.#inject({ syscall: 'readlink' });
      // /proc/self/fd/<n>: what an fd is (ENOENT for an fd that is not open, as Linux answers).
      const fd = /^\/proc\/self\/fd\/(\d+)$/.exec(path);
      if (fd) return this.kernel.fds.has(Number(fd[1])) ? this.kernel.fds.procLink(Number(fd[1])) : fail('ENOENT');
      return this.kernel.fs.readlink(path);
    });
  }

  readdir(path: string): string[] {
    return this.#syscall({ syscall: 'readdir', path }, () => {
      this.#inject({ syscall: 'readdir' });
      return this.kernel.fs.readdir(path);
    });
  }

  exists(path: string): boolean {
    return this.kernel.fs.exists(path);
  }

  mapMemory(bytes: Uint8Array): HostMapping {
    return this.#syscall({ syscall: 'mmap' }, () => {
      if (bytes.byteLength === 0) fail('EINVAL', 'nothing to map');
      return this.kernel.memory.map(bytes.byteLength, PROT_READ | PROT_WRITE, new ViewBacking(bytes));
    });
  }

  /**
   * Adopt memory the process already has at `mapping.addr` (a real mapping of the VMM: guest
   * RAM that KVM maps too), as mmap with MAP_FIXED_NOREPLACE over the same bytes: the simulated
   * kernel resolves that address to them, so a DMA map of it and the devices' DMA reach the
   * real memory. Unmapping the result ends the adoption and leaves the memory alone.
   * @throws HostError EINVAL (unaligned or empty), ENOMEM (past the user address space),
   *   EEXIST (over a simulated mapping).
   */
  adoptMapping(mapping: Pick<HostMapping, 'addr' | 'length' | 'view'>, prot = PROT_READ | PROT_WRITE): HostMapping {
    return this.#syscall({ syscall: 'mmap' }, () => {
      this.#inject({ syscall: 'mmap' });
      return this.kernel.memory.mapAt(mapping.addr, mapping.length, prot, new MappingBacking(mapping));
    });
  }

  /**
   * Adopt memory given a user address without mmap (HostKernel.mapMemory of the real host: a
   * typed array, a dirty bitmap) at exactly its bytes, which need not fill whole pages. Unmapping
   * the result ends the adoption.
   * @throws HostError EINVAL (empty), ENOMEM (past the user address space), EEXIST (over a mapping).
   */
  adoptMemory(mapping: Pick<HostMapping, 'addr' | 'length' | 'view'>): HostMapping {
    return this.#syscall({ syscall: 'mmap' }, () => {
      this.#inject({ syscall: 'mmap' });
      return this.kernel.memory.mapAt(mapping.addr, mapping.length, PROT_READ | PROT_WRITE, new MappingBacking(mapping), true);
    });
  }

  watch(fd: number, onReadable: () => void): () => void {
    return this.#syscall({ syscall: 'epoll_ctl', fd }, () => {
      const file = this.kernel.fds.get(fd);
      if (!(file instanceof EventFdFile)) fail('EPERM', 'only eventfds can be watched on SimHost');
      // Readiness is reported from the event loop, as a real poll is: never inside the signal.
      let pending = false;
      const notify = (): void => {
        if (pending) return;
        pending = true;
        setImmediate(() => {
          pending = false;
          if (file.readableListeners.has(notify) && file.count > 0n) onReadable();
        });
      };
      file.readableListeners.add(notify);
      if (file.count > 0n) notify();
      return () => void file.readableListeners.delete(notify);
    });
  }

  // ---- test hooks -------------------------------------------------------------------------

  /**
   * A DMA write initiated by device `bdf` (or mdev UUID) through its IO page table. Throws
   * `SimDmaFault` on an IOMMU fault (or with Bus Master Enable clear) and writes nothing.
   */
  deviceDma(bdf: string, iova: bigint, data: Uint8Array): void {
    this.kernel.device(bdf).dmaWrite(iova, data);
  }

  /** A DMA read by device `bdf` through its IO page table. Throws `SimDmaFault` on a fault. */
  deviceDmaRead(bdf: string, iova: bigint, length: number): Uint8Array {
    return this.kernel.device(bdf).dmaRead(iova, length);
  }

  /**
   * The device state a migration of device `bdf` would carry (its model's saved state), to
   * compare a source and a destination. Throws for a device without migration support.
   */
  deviceState(bdf: string): Uint8Array {
    const migration = this.kernel.device(bdf).model.migration;
    if (!migration) throw new ArgumentError(`sim: device ${bdf} has no migratable state`);
    return migration.save();
  }

  /**
   * Make the nth next matching call (default 1) fail with `errno`, before it changes anything
   * (close still releases its fd, as on Linux). By default it matches one ioctl, or with no
   * `ioctl` every ioctl; `syscall` picks another system call.
   */
  injectFault(fault: SimFault): void {
    this.kernel.faults.arm(fault);
  }

  /** The call the last injected fault failed, as `ioctl IOMMU_IOAS_MAP` or `close`: for a sweep's messages. */
  get lastInjectedFault(): string | undefined {
    const call = this.kernel.faults.lastFired;
    if (!call) return undefined;
    return call.syscall === 'ioctl' && call.request !== undefined ? `ioctl ${call.kind ? ioctlName(call.request, call.kind) : ioctlName(call.request)}` : call.syscall;
  }

  /** How many calls of `syscall` (default: ioctls; `'any'`: all) were made so far, to size a fail-nth sweep. */
  callCount(syscall: SimSyscall | 'any' = 'ioctl'): number {
    return this.kernel.faults.count(syscall);
  }

  /** Open fds and live kernel objects by kind, to prove nothing leaked. */
  census(): SimCensus {
    return { fds: this.kernel.fds.size, objects: this.kernel.census.snapshot() };
  }

  /** Let `ms` of virtual time pass: device timers fire and traffic generators run. */
  advance(ms: number): void {
    this.kernel.advance(ms);
  }

  #inject(call: SimCall): void {
    const injected = this.kernel.faults.check(call);
    if (injected) fail(injected, 'injected fault');
  }

  /** The file at `fd` (EBADF first, as the kernel checks the fd before anything else), after a fault check. */
  #injectOn(syscall: SimSyscall, fd: number) {
    const file = this.kernel.fds.get(fd);
    this.#inject({ syscall, kind: file.kind });
    return file;
  }

  #file(syscall: string, fd: number, request: number) {
    try {
      return this.kernel.fds.get(fd);
    } catch (e) {
      throw this.#hostError(e, { syscall, fd, request, ioctl: ioctlName(request) });
    }
  }

  #syscall<T>(details: Omit<HostErrorDetails, 'errno'>, call: () => T): T {
    try {
      return call();
    } catch (e) {
      throw this.#hostError(e, details);
    }
  }

  #hostError(e: unknown, details: Omit<HostErrorDetails, 'errno'>): unknown {
    if (!(e instanceof SimErrno)) return e;
    return new HostError({ ...details, errno: ERRNO[e.code] }, { cause: e });
  }
}
