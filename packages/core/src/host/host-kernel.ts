// The host-kernel port: the one seam between vmmkit and an operating system.
// LinuxHost implements it over libc (koffi); SimHost implements it by decoding the same bytes.

import { token } from '../di/token.js';

/**
 * The largest Uint8Array (and koffi view) V8 creates: 4 GiB. Larger mappings are reached
 * through windows ({@link HostMapping.view}); koffi aborts the process on a larger view.
 */
export const MAX_VIEW_LENGTH = 2 ** 32;

/**
 * The system calls vmmkit makes, with the exact binary structs of the Linux uAPI.
 *
 * A struct argument is a `Uint8Array` holding the struct's little-endian bytes; the kernel reads
 * and writes it in place. A pointer inside a struct holds the `addr` of a {@link HostMapping}
 * (plus an offset), so user memory is always allocated through {@link HostKernel.mmap}.
 *
 * Every method throws {@link HostError} on failure; none returns a negative errno.
 */
export interface HostKernel {
  /**
   * The host's page size in bytes (sysconf(_SC_PAGESIZE)): the unit of mmap, of DMA mappings and
   * of every dirty bitmap vmmkit reads, and so of guest RAM blocks and their dirty logs.
   */
  readonly pageSize: number;
  /**
   * True when `eventfd` returns eventfds of the kernel this process runs on, which other kernel
   * subsystems can take by fd (KVM's irqfds and ioeventfds). LinuxHost sets it; a simulated host
   * (SimHost, HybridHost) leaves it out: its eventfd numbers are its own bookkeeping, and handing
   * one to a real ioctl would name whatever real file has that number. This is the one place an
   * accelerator learns whether it may wire a device's eventfds into the kernel.
   */
  readonly kernelEventfds?: boolean;
  /** open(2). Returns the new fd. */
  open(path: string, flags: number): number;
  /** close(2). */
  close(fd: number): void;
  /**
   * ioctl(2). `arg` is a struct (`Uint8Array`, written back in place), an integer argument
   * (`number`/`bigint`, e.g. an extension id or a user address), or absent (0).
   * Returns the ioctl's non-negative result (a new fd for some requests).
   */
  ioctl(fd: number, request: number, arg?: Uint8Array | number | bigint): number;
  /** read(2) into `buf`; returns the byte count (0 at end of file). */
  read(fd: number, buf: Uint8Array): number;
  /** write(2) from `buf`; returns the byte count. */
  write(fd: number, buf: Uint8Array): number;
  /** pread(2) at `offset`; returns the byte count. */
  pread(fd: number, buf: Uint8Array, offset: bigint): number;
  /** pwrite(2) at `offset`; returns the byte count. */
  pwrite(fd: number, buf: Uint8Array, offset: bigint): number;
  /** mmap(2) at an address the kernel chooses. `fd = -1` with `MAP_ANONYMOUS` for plain memory. */
  mmap(length: number, prot: number, flags: number, fd: number, offset: bigint): HostMapping;
  /** eventfd(2). Returns the new fd. */
  eventfd(initval: number, flags: number): number;
  /**
   * dup(2) (as fcntl F_DUPFD_CLOEXEC): a second fd for the same open file. Passing an fd to
   * another party (a vfio-user peer) gives it a duplicate the same way SCM_RIGHTS does.
   */
  dup(fd: number): number;
  /** memfd_create(2): an anonymous file of size 0 that can be shared and mmapped. Returns the new fd. */
  memfdCreate(name: string, flags: number): number;
  /** ftruncate(2): set a file's size (a memfd's, before it is mapped). */
  ftruncate(fd: number, length: bigint): void;
  /** readlink(2), for sysfs links such as `iommu_group`. */
  readlink(path: string): string;
  /** The names in a directory, without `.` and `..`. */
  readdir(path: string): string[];
  /** Whether a path exists (follows links). Never throws. */
  exists(path: string): boolean;
  /**
   * Optional: give memory the process already has (a typed array, WebAssembly memory) a user
   * address, without copying, so the kernel can read and write it in place (dirty bitmaps are
   * reported straight into WebAssembly memory this way). The memory must stay alive and must
   * not move until the mapping is unmapped; unmapping leaves the memory itself alone.
   * Callers fall back to an mmap'd buffer and a copy where a host lacks it.
   */
  mapMemory?(bytes: Uint8Array): HostMapping;
  /**
   * Optional: call `onReadable` from the event loop whenever `fd` (an eventfd) becomes readable,
   * until the returned function is called. Stop watching before closing the fd. Callers fall
   * back to polling where a host lacks it.
   */
  watch?(fd: number, onReadable: () => void): () => void;
}

/** The token under which a VMM's `HostKernel` is registered. */
export const HostKernel = token<HostKernel>('host.kernel');

/** A memory mapping made by {@link HostKernel.mmap}. */
export interface HostMapping {
  /** The user virtual address: what goes into a struct's pointer field. */
  readonly addr: bigint;
  /** The mapping's length in bytes. */
  readonly length: number;
  /**
   * True when `addr` is where the memory lies in this process (LinuxHost's mmap), so that another
   * thread of the process can view it in place (`attachProcessMapping`). Absent on a simulated
   * host, whose addresses are its own bookkeeping.
   */
  readonly processAddress?: boolean;
  /**
   * The whole mapping as bytes. Only mappings up to 4 GiB (the typed-array limit) have one;
   * reading it on a larger mapping, or after `unmap`, throws.
   */
  readonly bytes: Uint8Array;
  /** A window of the mapping: `length` bytes (at most 4 GiB) from `offset`. */
  view(offset: number, length: number): Uint8Array;
  /** munmap(2). Further calls do nothing; views taken earlier must not be used again. */
  unmap(): void;
}
