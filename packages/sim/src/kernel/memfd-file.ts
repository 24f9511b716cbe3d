// memfd_create(2): an anonymous shared file, sized with ftruncate, that mmap shares between every
// mapping (and every process it is passed to: the vfio-user peers pass guest RAM this way).

import { ArgumentError } from '@vmmkit/core';
import { anonymousBacking, type MemoryBacking } from '../memory/backing.js';
import type { Census } from './census.js';
import { fail } from './sim-errno.js';
import { SimFile, type FileMapping } from './sim-file.js';

const EMPTY: MemoryBacking = {
  length: 0,
  view: (offset, length) => {
    if (offset !== 0 || length !== 0) throw new ArgumentError('sim: view of an empty memfd');
    return new Uint8Array(0);
  },
  read: () => {},
  write: () => {},
};

/**
 * A memfd. Departures from Linux, both refusals where Linux would let a program go on to a
 * SIGBUS: resizing while mapped is EBUSY, and mapping beyond the file's size is EINVAL.
 */
export class MemfdFile extends SimFile {
  readonly kind = undefined;
  #backing: MemoryBacking = EMPTY;
  #mappings = 0;

  constructor(private readonly census: Census) {
    super();
    census.add('memfd');
  }

  get size(): number {
    return this.#backing.length;
  }

  truncate(length: bigint): void {
    if (length < 0n || length > BigInt(Number.MAX_SAFE_INTEGER)) fail('EINVAL', `size ${length}`);
    if (Number(length) === this.#backing.length) return;
    if (this.#mappings > 0) fail('EBUSY', 'sim: a mapped memfd cannot be resized');
    const next = length === 0n ? EMPTY : anonymousBacking(Number(length));
    const keep = Math.min(next.length, this.#backing.length);
    if (keep > 0) {
      const bytes = new Uint8Array(keep);
      this.#backing.read(0, bytes);
      next.write(0, bytes);
    }
    // anonymousBacking rounds up to whole pages; the file keeps its exact size.
    this.#backing = next.length === Number(length) ? next : clip(next, Number(length));
  }

  override pread(buf: Uint8Array, offset: bigint): number {
    const n = Math.max(0, Math.min(buf.byteLength, this.size - Number(offset)));
    if (n > 0) this.#backing.read(Number(offset), buf.subarray(0, n));
    return n;
  }

  override pwrite(buf: Uint8Array, offset: bigint): number {
    if (Number(offset) + buf.byteLength > this.size) fail('EFBIG', 'sim: a memfd grows through ftruncate only');
    this.#backing.write(Number(offset), buf);
    return buf.byteLength;
  }

  override mmap(length: number, _prot: number, _flags: number, offset: bigint): FileMapping {
    if (offset + BigInt(length) > BigInt(this.size)) fail('EINVAL', `sim: mapping [${offset}, +${length}) reaches past the memfd's ${this.size} bytes`);
    this.#mappings++;
    let live = true;
    return {
      backing: this.#backing, offset: Number(offset),
      onUnmap: () => {
        if (live) this.#mappings--;
        live = false;
      },
    };
  }

  protected override release(): void {
    this.census.remove('memfd');
  }
}

/** The first `length` bytes of a backing. */
function clip(inner: MemoryBacking, length: number): MemoryBacking {
  const check = (offset: number, n: number): void => {
    if (offset < 0 || offset + n > length) throw new ArgumentError(`span [${offset}, +${n}) is outside ${length} bytes of memory`);
  };
  return {
    length,
    view: (offset, n) => (check(offset, n), inner.view(offset, n)),
    read: (offset, into) => (check(offset, into.byteLength), inner.read(offset, into)),
    write: (offset, from) => (check(offset, from.byteLength), inner.write(offset, from)),
  };
}
