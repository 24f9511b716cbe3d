// QEMU's fd sets (add-fd, qapi/misc.json): descriptors a client passes for the VMM to use later,
// grouped by set id, owned by the server until the set is removed or the server closes.

import { genericError } from '../protocol/qmp-error.js';

export interface FdSetEntry {
  readonly fd: number;
  readonly opaque?: string;
}

export class FdSets {
  readonly #sets = new Map<number, FdSetEntry[]>();

  constructor(private readonly close: (fd: number) => void) {}

  /**
   * Add `fd` to set `setId` (a new set with the lowest free id, when undefined); returns
   * AddfdInfo.
   * @throws QmpError when `setId` is negative.
   */
  add(fd: number, setId: number | undefined, opaque: string | undefined): { 'fdset-id': number; fd: number } {
    if (setId !== undefined && setId < 0) throw genericError("Parameter 'fdset-id' expects a non-negative value");
    const id = setId ?? this.#firstFreeId();
    const set = this.#sets.get(id) ?? [];
    set.push({ fd, ...(opaque !== undefined && { opaque }) });
    this.#sets.set(id, set);
    return { 'fdset-id': id, fd };
  }

  /** query-fdsets. */
  list(): { 'fdset-id': number; fds: { fd: number; opaque?: string }[] }[] {
    return [...this.#sets].map(([id, fds]) => ({ 'fdset-id': id, fds: fds.map((e) => ({ ...e })) }));
  }

  /**
   * remove-fd: one descriptor of a set, or the whole set.
   * @throws QmpError naming the set and descriptor when there is no such one.
   */
  remove(setId: number, fd: number | undefined): void {
    const set = this.#sets.get(setId);
    const doomed = set?.filter((e) => fd === undefined || e.fd === fd) ?? [];
    if (!set || doomed.length === 0) {
      throw genericError(`File descriptor named '${fd === undefined ? `fdset-id:${setId}` : `fdset-id:${setId}, fd:${fd}`}' not found`);
    }
    for (const e of doomed) this.#closeQuietly(e.fd);
    const rest = set.filter((e) => !doomed.includes(e));
    if (rest.length === 0) this.#sets.delete(setId);
    else this.#sets.set(setId, rest);
  }

  /** Close everything (the server closes). */
  clear(): void {
    for (const set of this.#sets.values()) for (const e of set) this.#closeQuietly(e.fd);
    this.#sets.clear();
  }

  /** The lowest set id not in use (QEMU's "first available fdset ID"). */
  #firstFreeId(): number {
    let id = 0;
    while (this.#sets.has(id)) id++;
    return id;
  }

  #closeQuietly(fd: number): void {
    try {
      this.close(fd);
    } catch {
      // Already closed on the host: nothing left to release.
    }
  }
}
