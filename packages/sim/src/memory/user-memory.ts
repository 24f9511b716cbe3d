// The simulated process's address space: what mmap hands out and what pointers in uAPI structs
// (user_va, data_uptr, bitmaps) refer to. Kernel code resolves user addresses here, failing
// with EFAULT exactly where copy_from_user / pin_user_pages would.

import { ArgumentError, type HostMapping } from '@vmmkit/core';
import { PROT_READ, PROT_WRITE } from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import { RangeMap } from '../kernel/range-map.js';
import type { Census } from '../kernel/census.js';
import type { MemoryBacking } from './backing.js';

/** A piece of memory behind a span of user addresses. */
export interface UserSpan {
  readonly backing: MemoryBacking;
  readonly offset: number;
  readonly length: number;
}

interface Region {
  readonly length: number;
  readonly prot: number;
  readonly backing: MemoryBacking;
  readonly backingOffset: number;
  /** Called when the region is unmapped (a device region drops its user, say). */
  readonly onUnmap?: () => void;
}

const PAGE = 4096n;

/** The part [offset, offset + length) of memory made of consecutive spans (pinned pages, say). */
export function sliceSpans(spans: readonly UserSpan[], offset: number, length: number): UserSpan[] {
  const out: UserSpan[] = [];
  let skip = offset;
  let want = length;
  for (const s of spans) {
    if (want === 0) break;
    if (skip >= s.length) {
      skip -= s.length;
      continue;
    }
    const n = Math.min(s.length - skip, want);
    out.push({ backing: s.backing, offset: s.offset + skip, length: n });
    want -= n;
    skip = 0;
  }
  return out;
}
/** x86-64's TASK_SIZE with 4-level paging: user addresses end below 2^47. */
const USER_SPACE_END = 1n << 47n;
// Leave a guard gap between mappings, so an overrun faults instead of reaching the neighbour.
const GUARD = 16n * PAGE;

/** The user address space: mappings, and copy/pin of user memory with EFAULT semantics. */
export class UserMemory {
  readonly #regions = new RangeMap<Region>();
  #next: bigint;

  constructor(
    private readonly census: Census,
    /** Anonymous memory is huge-page backed (physically contiguous when pinned). */
    readonly hugePages = false,
    /** Where mmap starts handing out addresses. */
    mappingBase = 0x7f00_0000_0000n,
  ) {
    this.#next = mappingBase;
  }

  /**
   * Map `backing[backingOffset, +length)` at a fresh address. The kernel maps whole pages, so the
   * rest of the last page is reachable too (kernel code pinning it, say) where the backing has it;
   * the mapping's own `bytes` stay the `length` asked for.
   */
  map(length: number, prot: number, backing: MemoryBacking, backingOffset = 0, onUnmap?: () => void): HostMapping {
    if (!Number.isInteger(length) || length <= 0) fail('EINVAL', 'mmap length must be positive');
    const size = ((BigInt(length) + PAGE - 1n) / PAGE) * PAGE;
    // Past anything placed at a fixed address (adopted memory) that is in the way.
    let addr = this.#next;
    for (let taken = this.#regions.overlapping(addr, addr + size + GUARD - 1n); taken.length > 0; taken = this.#regions.overlapping(addr, addr + size + GUARD - 1n)) {
      addr = ((taken.at(-1)!.last + PAGE) / PAGE) * PAGE + GUARD;
    }
    this.#next = addr + size + GUARD;
    return this.#install(addr, length, size, prot, backing, backingOffset, onUnmap);
  }

  /**
   * Map `backing` at exactly `addr`, as mmap with MAP_FIXED_NOREPLACE: memory the process has at
   * that address already (the real kernel's mapping, adopted so that simulated devices DMA into
   * it). EINVAL for an unaligned address or an empty length, ENOMEM past the user address space,
   * EEXIST over a mapping.
   */
  mapAt(addr: bigint, length: number, prot: number, backing: MemoryBacking, exact = false): HostMapping {
    if (!Number.isInteger(length) || length <= 0) fail('EINVAL', 'mmap length must be positive');
    if (!exact && addr % PAGE !== 0n) fail('EINVAL', `address 0x${addr.toString(16)} is not page aligned`);
    if (addr <= 0n) fail('EINVAL', `address 0x${addr.toString(16)}`);
    // `exact`: memory the process had without mmap (a typed array given a user address), which
    // shares its pages with other memory: only its own bytes are adopted.
    const size = exact ? BigInt(length) : ((BigInt(length) + PAGE - 1n) / PAGE) * PAGE;
    if (addr + size > USER_SPACE_END) fail('ENOMEM', `[0x${addr.toString(16)}, +0x${size.toString(16)}) is past the user address space`);
    if (this.#regions.overlapping(addr, addr + size - 1n).length > 0) fail('EEXIST', `0x${addr.toString(16)} is mapped already`);
    return this.#install(addr, length, size, prot, backing, 0);
  }

  #install(addr: bigint, length: number, size: bigint, prot: number, backing: MemoryBacking, backingOffset: number, onUnmap?: () => void): HostMapping {
    const reach = Math.min(Number(size), backing.length - backingOffset);
    const range = this.#regions.insert(addr, addr + BigInt(reach) - 1n, { length: reach, prot, backing, backingOffset, onUnmap });
    this.census.add('mapping');
    let mapped = true;
    const assertMapped = (): void => {
      if (!mapped) throw new ArgumentError(`mapping at 0x${addr.toString(16)} was unmapped`);
    };
    const view = (offset: number, n: number): Uint8Array => {
      assertMapped();
      if (!Number.isInteger(offset) || !Number.isInteger(n) || offset < 0 || n < 0 || offset + n > length) {
        throw new ArgumentError(`view [${offset}, +${n}) is outside a mapping of ${length} bytes`);
      }
      return backing.view(backingOffset + offset, n);
    };
    let bytes: Uint8Array | undefined;
    return {
      addr,
      length,
      get bytes() {
        assertMapped();
        if (!bytes) {
          if (length > 2 ** 32) throw new ArgumentError(`a view of ${length} bytes exceeds the 4 GiB typed-array limit; take windows with view()`);
          bytes = view(0, length);
        }
        return bytes;
      },
      view,
      unmap: () => {
        if (!mapped) return;
        mapped = false;
        bytes = undefined;
        this.#regions.delete(range);
        this.census.remove('mapping');
        range.value.onUnmap?.();
      },
    };
  }

  /**
   * The memory behind [va, va + length), as pin_user_pages sees it: EFAULT if any byte is
   * unmapped or the mapping lacks the access asked for.
   */
  resolve(va: bigint, length: number, access: 'read' | 'write'): UserSpan[] {
    if (length === 0) return [];
    const last = va + BigInt(length) - 1n;
    if (va < 0n || last > 0xffff_ffff_ffff_ffffn) fail('EFAULT', `user address 0x${va.toString(16)} out of range`);
    const want = access === 'write' ? PROT_WRITE : PROT_READ;
    const spans: UserSpan[] = [];
    let at = va;
    for (const r of this.#regions.overlapping(va, last)) {
      if (r.start > at) break;
      if (!(r.value.prot & want)) fail('EFAULT', `user memory at 0x${at.toString(16)} is not ${access}able`);
      const end = r.last < last ? r.last : last;
      spans.push({ backing: r.value.backing, offset: r.value.backingOffset + Number(at - r.start), length: Number(end - at) + 1 });
      at = end + 1n;
      if (at > last) return spans;
    }
    fail('EFAULT', `user address 0x${at.toString(16)} is not mapped`);
  }

  /** copy_from_user: a copy of user memory. */
  read(va: bigint, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let done = 0;
    for (const s of this.resolve(va, length, 'read')) {
      s.backing.read(s.offset, out.subarray(done, done + s.length));
      done += s.length;
    }
    return out;
  }

  /** copy_to_user. */
  write(va: bigint, data: Uint8Array): void {
    let done = 0;
    for (const s of this.resolve(va, data.byteLength, 'write')) {
      s.backing.write(s.offset, data.subarray(done, done + s.length));
      done += s.length;
    }
  }
}
