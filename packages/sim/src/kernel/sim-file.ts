// An open file of the simulated kernel (struct file + its file_operations). Files are
// refcounted like the kernel's: an fd holds one reference, and so does every kernel object
// that keeps the file alive (a group holds its container, a bound device holds its iommufd).

import { InvariantError } from '@vmmkit/core';
import type { FdKind } from '@vmmkit/core/uapi';
import type { MemoryBacking } from '../memory/backing.js';
import { fail } from './sim-errno.js';

/** The argument of an ioctl as the port passes it: struct bytes in place, or an integer. */
export type IoctlArg = Uint8Array | number | bigint;

/** What an mmap of a file maps: memory, and who to tell when the mapping goes away. */
export interface FileMapping {
  readonly backing: MemoryBacking;
  readonly offset: number;
  readonly onUnmap?: () => void;
}

/** Base of every simulated file: defaults are the kernel's answers for a missing operation. */
export abstract class SimFile {
  /** How ioctl numbers on this file are named in errors (undefined: not a uAPI file). */
  abstract readonly kind: FdKind | undefined;
  #refs = 0;
  #released = false;

  /** Take a reference (an fd, or a kernel object keeping this file alive). */
  ref(): this {
    if (this.#released) throw new InvariantError(`sim: reference taken on a released ${this.constructor.name}`);
    this.#refs++;
    return this;
  }

  /** Drop a reference; the last one releases the file (the kernel's fops->release). */
  unref(): void {
    if (--this.#refs === 0) {
      this.#released = true;
      this.release();
    }
  }

  /** Release a file no fd or object ever held (its fd install failed, say). */
  discard(): void {
    if (this.#refs !== 0 || this.#released) throw new InvariantError(`sim: discarding a ${this.constructor.name} that is in use`);
    this.#released = true;
    this.release();
  }

  get released(): boolean {
    return this.#released;
  }

  ioctl(_request: number, _arg: IoctlArg): number {
    return fail('ENOTTY');
  }

  read(_buf: Uint8Array): number {
    return fail('EINVAL', 'file has no read operation');
  }

  write(_buf: Uint8Array): number {
    return fail('EINVAL', 'file has no write operation');
  }

  pread(_buf: Uint8Array, _offset: bigint): number {
    return fail('ESPIPE');
  }

  pwrite(_buf: Uint8Array, _offset: bigint): number {
    return fail('ESPIPE');
  }

  mmap(_length: number, _prot: number, _flags: number, _offset: bigint): FileMapping {
    return fail('ENODEV', 'file cannot be mapped');
  }

  /** Free what the file holds. Called once, when the last reference goes. */
  protected release(): void {}
}
