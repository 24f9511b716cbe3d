// A BAR-sized address range with device memory at one window of it: what a model hands out
// as barMemory() when only part of a BAR is mappable (edu's DMA buffer inside its 1 MiB BAR).

import type { MemoryBacking } from '../memory/backing.js';

/** `inner` placed at `offset` of a `length`-byte range; bytes outside the window do not exist. */
export class WindowBacking implements MemoryBacking {
  constructor(
    readonly length: number,
    private readonly offset: number,
    private readonly inner: MemoryBacking,
  ) {
    if (offset < 0 || offset + inner.length > length) throw new RangeError('window outside its range');
  }

  view(offset: number, length: number): Uint8Array {
    return this.inner.view(this.#inside(offset, length), length);
  }

  read(offset: number, into: Uint8Array): void {
    this.inner.read(this.#inside(offset, into.byteLength), into);
  }

  write(offset: number, from: Uint8Array): void {
    this.inner.write(this.#inside(offset, from.byteLength), from);
  }

  #inside(offset: number, length: number): number {
    const at = offset - this.offset;
    if (at < 0 || at + length > this.inner.length) {
      throw new RangeError(`[${offset}, +${length}) is outside the window [${this.offset}, +${this.inner.length})`);
    }
    return at;
  }
}
