// LinuxHost: the host-kernel port on the real Linux kernel, through libc.

import { ArgumentError } from '../errors/vmm-error-base.js';
import { readdirSync, existsSync, readlinkSync } from 'node:fs';
import { HostError } from './host-error.js';
import type { HostKernel, HostMapping } from './host-kernel.js';
import { loadLibc, MAP_FAILED, type Libc } from './linux-libc.js';
import { MAX_VIEW_LENGTH } from './host-kernel.js';
import type { FdKind } from '../uapi/ioctl.js';
import { ioctlName } from '../uapi/ioctl-names.js';
import {
  VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_MASK, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_SET,
  VFIO_GROUP_GET_DEVICE_FD, vfio_device_feature, vfio_device_feature_mig_state,
} from '../uapi/vfio.js';

/** The kind of fd a path opens, so that errors can name VFIO's overloaded ioctl numbers. */
function kindOfPath(path: string): FdKind | undefined {
  if (path === '/dev/vfio/vfio') return 'vfio-container';
  if (path === '/dev/iommu') return 'iommufd';
  if (path === '/dev/kvm') return 'kvm';
  if (path.startsWith('/dev/vfio/devices/')) return 'vfio-device';
  if (/^\/dev\/vfio\/(noiommu-)?\d+$/.test(path)) return 'vfio-group';
  return undefined;
}

/**
 * The host-kernel port over the real kernel: every call goes to libc through koffi, and errno is
 * read straight after the call. Path lookups (readlink, readdir, exists) use Node's fs, which
 * makes the same system calls and reports the same errno.
 */
/** sysconf's name for the page size, in Linux's <bits/confname.h> (every architecture). */
const _SC_PAGESIZE = 30;

export class LinuxHost implements HostKernel {
  readonly #libc: Libc = loadLibc();
  /** sysconf(_SC_PAGESIZE): 4096 on x86-64, 4096, 16384 or 65536 on arm64. */
  readonly pageSize = this.#libc.sysconf(_SC_PAGESIZE);
  readonly #kinds = new Map<number, FdKind>();
  /** Its eventfds are real: KVM can take them as irqfds and ioeventfds. */
  readonly kernelEventfds = true;

  open(path: string, flags: number): number {
    const fd = this.#libc.open(path, flags);
    if (fd < 0) throw new HostError({ errno: this.#libc.errno(), syscall: 'open', path });
    const kind = kindOfPath(path);
    if (kind) this.#kinds.set(fd, kind);
    return fd;
  }

  close(fd: number): void {
    if (this.#libc.close(fd) < 0) throw new HostError({ errno: this.#libc.errno(), syscall: 'close', fd });
    this.#kinds.delete(fd);
  }

  ioctl(fd: number, request: number, arg: Uint8Array | number | bigint = 0): number {
    const rc = arg instanceof Uint8Array ? this.#libc.ioctlPtr(fd, request, arg) : this.#libc.ioctlInt(fd, request, arg);
    if (rc < 0) {
      const errno = this.#libc.errno();
      throw new HostError({ errno, syscall: 'ioctl', fd, request, ioctl: ioctlName(request, this.#kinds.get(fd)) });
    }
    this.#recordNewFd(fd, request, arg, rc);
    return rc;
  }

  read(fd: number, buf: Uint8Array): number {
    return this.#count('read', fd, this.#libc.read(fd, buf, buf.byteLength));
  }

  write(fd: number, buf: Uint8Array): number {
    return this.#count('write', fd, this.#libc.write(fd, buf, buf.byteLength));
  }

  pread(fd: number, buf: Uint8Array, offset: bigint): number {
    return this.#count('pread', fd, this.#libc.pread(fd, buf, buf.byteLength, offset));
  }

  pwrite(fd: number, buf: Uint8Array, offset: bigint): number {
    return this.#count('pwrite', fd, this.#libc.pwrite(fd, buf, buf.byteLength, offset));
  }

  mmap(length: number, prot: number, flags: number, fd: number, offset: bigint): HostMapping {
    const addr = this.#libc.mmap(length, prot, flags, fd, offset);
    if (addr === MAP_FAILED || addr === 0n) {
      throw new HostError({ errno: this.#libc.errno(), syscall: 'mmap', fd: fd >= 0 ? fd : undefined });
    }
    return new LinuxMapping(this.#libc, addr, length);
  }

  eventfd(initval: number, flags: number): number {
    const fd = this.#libc.eventfd(initval, flags);
    if (fd < 0) throw new HostError({ errno: this.#libc.errno(), syscall: 'eventfd' });
    return fd;
  }

  dup(fd: number): number {
    return this.#count('fcntl', fd, this.#libc.dup(fd));
  }

  memfdCreate(name: string, flags: number): number {
    const fd = this.#libc.memfdCreate(name, flags);
    if (fd < 0) throw new HostError({ errno: this.#libc.errno(), syscall: 'memfd_create' });
    return fd;
  }

  ftruncate(fd: number, length: bigint): void {
    this.#count('ftruncate', fd, this.#libc.ftruncate(fd, length));
  }

  readlink(path: string): string {
    return fsCall('readlink', path, () => readlinkSync(path));
  }

  readdir(path: string): string[] {
    return fsCall('readdir', path, () => readdirSync(path));
  }

  exists(path: string): boolean {
    return existsSync(path);
  }

  watch(fd: number, onReadable: () => void): () => void {
    return this.#libc.pollReadable(fd, onReadable);
  }

  mapMemory(bytes: Uint8Array): HostMapping {
    // The bytes already live at an address of this process: hand the kernel that address.
    const addr = this.#libc.address(bytes);
    return {
      addr,
      length: bytes.byteLength,
      bytes,
      view: (offset, length) => {
        if (offset < 0 || length < 0 || offset + length > bytes.byteLength) throw new ArgumentError(`view [${offset}, +${length}) is outside ${bytes.byteLength} bytes`);
        return bytes.subarray(offset, offset + length);
      },
      unmap: () => {},
    };
  }

  #count(syscall: string, fd: number, n: number): number {
    if (n < 0) throw new HostError({ errno: this.#libc.errno(), syscall, fd });
    return n;
  }

  /** Remember the kind of fds that ioctls create: device fds from groups, migration data fds. */
  #recordNewFd(fd: number, request: number, arg: Uint8Array | number | bigint, rc: number): void {
    const kind = this.#kinds.get(fd);
    if (kind === 'vfio-group' && request === VFIO_GROUP_GET_DEVICE_FD) {
      this.#kinds.set(rc, 'vfio-device');
    } else if (kind === 'vfio-device' && request === VFIO_DEVICE_FEATURE && arg instanceof Uint8Array) {
      const flags = vfio_device_feature.get(arg, 'flags');
      if (
        (flags & VFIO_DEVICE_FEATURE_MASK) === VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE &&
        flags & VFIO_DEVICE_FEATURE_SET &&
        arg.byteLength >= vfio_device_feature.size + vfio_device_feature_mig_state.size
      ) {
        const dataFd = vfio_device_feature_mig_state.get(arg, 'data_fd', vfio_device_feature.size);
        if (dataFd >= 0) this.#kinds.set(dataFd, 'vfio-mig-data');
      }
    }
  }
}

/** Run a Node fs call and turn its error into a HostError with the same errno. */
function fsCall<T>(syscall: string, path: string, call: () => T): T {
  try {
    return call();
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).errno;
    if (typeof errno !== 'number') throw e;
    throw new HostError({ errno: Math.abs(errno), syscall, path });
  }
}

/** A mapping made by mmap(2) in this process. */
class LinuxMapping implements HostMapping {
  readonly processAddress = true;
  #bytes?: Uint8Array;
  #mapped = true;

  constructor(
    private readonly libc: Libc,
    readonly addr: bigint,
    readonly length: number,
  ) {}

  get bytes(): Uint8Array {
    if (!this.#bytes) this.#bytes = this.view(0, this.length);
    this.#assertMapped();
    return this.#bytes;
  }

  view(offset: number, length: number): Uint8Array {
    this.#assertMapped();
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > this.length) {
      throw new ArgumentError(`view [${offset}, +${length}) is outside a mapping of ${this.length} bytes`);
    }
    if (length > MAX_VIEW_LENGTH) {
      throw new ArgumentError(`a view of ${length} bytes exceeds the 4 GiB typed-array limit; take windows with view()`);
    }
    return this.libc.view(this.addr + BigInt(offset), length);
  }

  unmap(): void {
    if (!this.#mapped) return;
    if (this.libc.munmap(this.addr, this.length) < 0) throw new HostError({ errno: this.libc.errno(), syscall: 'munmap' });
    this.#mapped = false;
    this.#bytes = undefined;
  }

  #assertMapped(): void {
    if (!this.#mapped) throw new ArgumentError(`mapping at 0x${this.addr.toString(16)} was unmapped`);
  }
}
