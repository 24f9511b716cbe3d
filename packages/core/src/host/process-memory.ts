// Reaching this process's memory and fds from another of its threads (a worker): memory that
// LinuxHost mmap'd lives at the same address for every thread of the process, and an fd is the
// process's, so a worker can view guest RAM in place and take a socket over without a copy.

import { ArgumentError } from '../errors/vmm-error.js';
import { HostError } from './host-error.js';
import { MAX_VIEW_LENGTH, type HostMapping } from './host-kernel.js';
import { loadLibc } from './linux-libc.js';

/**
 * Whether `mapping` is memory of this process at `mapping.addr` (a {@link HostMapping.processAddress}
 * mapping), so that {@link attachProcessMapping} can reach it from another thread.
 */
export function isProcessMapping(mapping: HostMapping): boolean {
  return mapping.processAddress === true;
}

/**
 * A mapping another thread of this process made (LinuxHost's mmap), viewed from this thread at
 * its address. The memory stays the other thread's: `unmap()` only stops this view, and the owner
 * must not unmap it while this thread may still use it.
 * @throws ArgumentError for an address of 0 or a length that is not a positive integer.
 */
export function attachProcessMapping(addr: bigint, length: number): HostMapping {
  if (addr <= 0n || !Number.isSafeInteger(length) || length <= 0) throw new ArgumentError(`attachProcessMapping: no memory at 0x${addr.toString(16)} (+${length})`);
  return new AttachedMapping(addr, length);
}

/**
 * A second fd for the open file behind `fd` (fcntl F_DUPFD_CLOEXEC), for a thread that takes a
 * connection over while the first fd is closed.
 * @throws HostError (syscall `fcntl`) when the process cannot have another fd.
 */
export function duplicateProcessFd(fd: number): number {
  const libc = loadLibc();
  const copy = libc.dup(fd);
  if (copy < 0) throw new HostError({ errno: libc.errno(), syscall: 'fcntl', fd });
  return copy;
}

/** close(2) an fd of this process that no transport or file object owns (a duplicate never handed over). */
export function closeProcessFd(fd: number): void {
  const libc = loadLibc();
  if (libc.close(fd) < 0) throw new HostError({ errno: libc.errno(), syscall: 'close', fd });
}

class AttachedMapping implements HostMapping {
  readonly processAddress = true;
  #bytes: Uint8Array | undefined;
  #attached = true;

  constructor(readonly addr: bigint, readonly length: number) {}

  get bytes(): Uint8Array {
    if (!this.#bytes) this.#bytes = this.view(0, this.length);
    return this.#bytes;
  }

  view(offset: number, length: number): Uint8Array {
    if (!this.#attached) throw new ArgumentError(`the view of 0x${this.addr.toString(16)} was released`);
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > this.length) {
      throw new ArgumentError(`view [${offset}, +${length}) is outside a mapping of ${this.length} bytes`);
    }
    if (length > MAX_VIEW_LENGTH) throw new ArgumentError(`a view of ${length} bytes exceeds the 4 GiB typed-array limit; take windows with view()`);
    return loadLibc().view(this.addr + BigInt(offset), length);
  }

  unmap(): void {
    this.#attached = false;
    this.#bytes = undefined;
  }
}
