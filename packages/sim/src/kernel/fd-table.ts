// The process's fd table: lowest free number first, as on Linux (0-2 are stdio).

import { fail } from './sim-errno.js';
import type { SimFile } from './sim-file.js';

export class FdTable {
  readonly #files = new Map<number, SimFile>();
  /** The path each fd was opened at, for /proc/self/fd (anonymous files have none). */
  readonly #paths = new Map<number, string>();

  constructor(
    private readonly limit = 1024,
    /** The lowest fd handed out (0-2 are stdio; higher beside a real process, see SimHostConfig.process). */
    private readonly first = 3,
  ) {}

  /** Install a file at the lowest free fd (taking a reference); EMFILE at RLIMIT_NOFILE. */
  install(file: SimFile, path?: string): number {
    let fd = this.first;
    while (this.#files.has(fd)) fd++;
    if (fd - this.first + 3 >= this.limit) fail('EMFILE');
    this.#files.set(fd, file.ref());
    if (path !== undefined) this.#paths.set(fd, path);
    return fd;
  }

  /** What /proc/self/fd/<fd> links to: the path opened, or `anon_inode:[<kind>]` as Linux names anonymous files. */
  procLink(fd: number): string {
    const file = this.get(fd);
    return this.#paths.get(fd) ?? `anon_inode:[${file.kind ?? 'file'}]`;
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
    this.#paths.delete(fd);
    file.unref();
  }

  /** Whether `fd` is open. */
  has(fd: number): boolean {
    return this.#files.has(fd);
  }

  get size(): number {
    return this.#files.size;
  }
}
