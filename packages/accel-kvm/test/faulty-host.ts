// A host-kernel port around the real one that counts calls and fails the nth (SimHost cannot
// model KVM, so the KVM tests inject their faults here): the failed call does nothing and
// throws the HostError the kernel would (EIO), except close, which really closes first (Linux
// releases the fd even when close reports an error).

import { readdirSync, readlinkSync } from 'node:fs';
import { HostError, type HostKernel, type HostMapping } from '@vmmkit/core';
import { ioctlName } from '@vmmkit/core/uapi';

const EIO = 5;

export class FaultyHost implements HostKernel {
  readonly pageSize: number;
  readonly kernelEventfds: boolean | undefined;
  /** Calls counted since `arm` (or creation). */
  calls = 0;
  /** The call to fail (1-based, counted from `arm`), or 0 for none. */
  #nth = 0;
  /** What the injected failure hit, e.g. `ioctl KVM_CREATE_VCPU`. */
  injected: string | undefined;

  constructor(private readonly inner: HostKernel) {
    this.pageSize = inner.pageSize;
    this.kernelEventfds = inner.kernelEventfds;
  }

  /** Count from zero again and fail call `nth` (0: fail nothing). */
  arm(nth: number): void {
    this.calls = 0;
    this.#nth = nth;
    this.injected = undefined;
  }

  #fail(syscall: string, detail: Partial<ConstructorParameters<typeof HostError>[0]> = {}): boolean {
    this.calls++;
    if (this.calls !== this.#nth) return false;
    this.injected = `${syscall}${detail.request !== undefined ? ` ${ioctlName(detail.request) ?? `0x${detail.request.toString(16)}`}` : ''}`;
    return true;
  }

  open(path: string, flags: number): number {
    if (this.#fail('open')) throw new HostError({ errno: EIO, syscall: 'open', path });
    return this.inner.open(path, flags);
  }
  close(fd: number): void {
    const fail = this.#fail('close');
    this.inner.close(fd);
    if (fail) throw new HostError({ errno: EIO, syscall: 'close', fd });
  }
  ioctl(fd: number, request: number, arg?: Uint8Array | number | bigint): number {
    if (this.#fail('ioctl', { request })) throw new HostError({ errno: EIO, syscall: 'ioctl', fd, request, ioctl: ioctlName(request) });
    return this.inner.ioctl(fd, request, arg);
  }
  read(fd: number, buf: Uint8Array): number {
    if (this.#fail('read')) throw new HostError({ errno: EIO, syscall: 'read', fd });
    return this.inner.read(fd, buf);
  }
  write(fd: number, buf: Uint8Array): number {
    if (this.#fail('write')) throw new HostError({ errno: EIO, syscall: 'write', fd });
    return this.inner.write(fd, buf);
  }
  pread(fd: number, buf: Uint8Array, offset: bigint): number {
    if (this.#fail('pread')) throw new HostError({ errno: EIO, syscall: 'pread', fd });
    return this.inner.pread(fd, buf, offset);
  }
  pwrite(fd: number, buf: Uint8Array, offset: bigint): number {
    if (this.#fail('pwrite')) throw new HostError({ errno: EIO, syscall: 'pwrite', fd });
    return this.inner.pwrite(fd, buf, offset);
  }
  mmap(length: number, prot: number, flags: number, fd: number, offset: bigint): HostMapping {
    if (this.#fail('mmap')) throw new HostError({ errno: EIO, syscall: 'mmap', fd: fd >= 0 ? fd : undefined });
    return this.inner.mmap(length, prot, flags, fd, offset);
  }
  eventfd(initval: number, flags: number): number {
    if (this.#fail('eventfd')) throw new HostError({ errno: EIO, syscall: 'eventfd' });
    return this.inner.eventfd(initval, flags);
  }
  dup(fd: number): number {
    if (this.#fail('dup')) throw new HostError({ errno: EIO, syscall: 'dup', fd });
    return this.inner.dup(fd);
  }
  memfdCreate(name: string, flags: number): number {
    if (this.#fail('memfd_create')) throw new HostError({ errno: EIO, syscall: 'memfd_create' });
    return this.inner.memfdCreate(name, flags);
  }
  ftruncate(fd: number, length: bigint): void {
    if (this.#fail('ftruncate')) throw new HostError({ errno: EIO, syscall: 'ftruncate', fd });
    this.inner.ftruncate(fd, length);
  }
  readlink(path: string): string {
    return this.inner.readlink(path);
  }
  readdir(path: string): string[] {
    return this.inner.readdir(path);
  }
  exists(path: string): boolean {
    return this.inner.exists(path);
  }
  mapMemory(bytes: Uint8Array): HostMapping {
    return this.inner.mapMemory!(bytes);
  }
}

/** The fds this process has open to KVM (/dev/kvm and its anon inodes), by target. */
export function kvmFds(): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (/kvm/.test(target)) out.push(target);
    } catch {
      // The fd closed while listing (the listing's own).
    }
  }
  return out.sort();
}
