// The process's fd table: lowest free number first, as on Linux (0-2 are stdio).

import { fail } from './sim-errno.js';
import type { SimFile } from './sim-file.js';

export class FdTable {
  readonly #files = new Map<number, SimFile>();

  constructor(private readonly limit = 1024) {}

  /** Install a file at the lowest free fd (taking a reference); EMFILE at RLIMIT_NOFILE. */
  install(file: SimFile): number {
    let fd = 3;
    while (this.#files.has(fd)) fd++;
    if (fd >= this.limit) fail('EMFILE');
    this.#files.set(fd, file.ref());
    return fd;
  }

  /** The file open at `fd`; EBADF if none. */
  get(fd: number): SimFile {
    const file = this.#files.get(fd);
    if (!file) fail('EBADF');
    return file;
  }

  /** Close `fd`, dropping its reference. */
  close(fd: number): void {
    const file = this.get(fd);
    this.#files.delete(fd);
    file.unref();
  }

  get size(): number {
    return this.#files.size;
  }
}
