// A dirty bitmap in user memory as the kernel writes it: pinned byte views (iova_bitmap's pinned
// pages, copy_to_user of type1's bitmaps), little-endian bit order, any byte alignment.

import { InvariantError } from '@vmmkit/core';
import { setUserBits } from '../iommu/sparse-bitmap.js';
import type { UserMemory } from '../memory/user-memory.js';

const CHUNK = 1 << 30; // a view never crosses a 1 GiB backing chunk

export class UserBitmap {
  private constructor(private readonly views: Uint8Array[]) {}

  /** Pin `bytes` bytes at user address `data` for writing: EFAULT if any is not writable. */
  static pin(memory: UserMemory, data: bigint, bytes: number): UserBitmap {
    const views: Uint8Array[] = [];
    for (const s of memory.resolve(data, bytes, 'write')) {
      for (let done = 0; done < s.length; ) {
        const at = s.offset + done;
        const n = Math.min(s.length - done, CHUNK - (at % CHUNK));
        views.push(s.backing.view(at, n));
        done += n;
      }
    }
    return new UserBitmap(views);
  }

  /** OR bits [bit, bit + count) in (bitmap_set). */
  set(bit: number, count: number): void {
    if (count > 0) setUserBits(this.views, bit, count);
  }

  /** Clear bits [bit, bit + count). */
  clear(bit: number, count: number): void {
    let i = bit;
    const end = bit + count;
    while (i < end) {
      const b = i & 7;
      const n = Math.min(8 - b, end - i);
      if (b === 0 && end - i >= 8) {
        const bytes = Math.floor((end - i) / 8);
        this.#fillBytes(i / 8, bytes);
        i += bytes * 8;
        continue;
      }
      const [view, at] = this.#locate(Math.floor(i / 8));
      view[at] = view[at]! & ~(((1 << n) - 1) << b);
      i += n;
    }
  }

  #fillBytes(byte: number, count: number): void {
    while (count > 0) {
      const [view, at] = this.#locate(byte);
      const n = Math.min(count, view.byteLength - at);
      view.fill(0, at, at + n);
      byte += n;
      count -= n;
    }
  }

  #locate(byte: number): [Uint8Array, number] {
    let base = 0;
    for (const v of this.views) {
      if (byte < base + v.byteLength) return [v, byte - base];
      base += v.byteLength;
    }
    throw new InvariantError('sim: bit beyond the pinned user bitmap');
  }
}
