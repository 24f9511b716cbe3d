// Guest RAM: blocks of host memory (HostKernel.mmap) at guest physical addresses, with the
// migration dirty log (QEMU's DIRTY_MEMORY_MIGRATION) that vCPU-style writes and DMA dirty
// reports feed.

import { ArgumentError } from '../errors/vmm-error.js';
import { MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, MFD_CLOEXEC, PROT_READ, PROT_WRITE } from '../host/posix.js';
import type { HostKernel, HostMapping } from '../host/host-kernel.js';
import { HostError } from '../host/host-error.js';
import { DirtyBitmap } from './dirty-bitmap.js';
import { checkRamSpecs, ramSpecError } from './ram-specs.js';

export { MAX_RAM_BLOCK_SIZE } from './ram-specs.js';


/** A RAM block to allocate: where it sits in guest physical memory and how big it is. */
export interface RamSpec {
  readonly gpa: bigint;
  readonly size: bigint;
  readonly name?: string;
}

/** How guest RAM is backed. */
export interface GuestMemoryOptions {
  /**
   * `'anonymous'` (default): private anonymous memory. `'memfd'`: each block is a memfd mapped
   * shared, so its file can be handed to another process (a vfio-user server maps it for DMA,
   * as QEMU's memory-backend-memfd,share=on).
   */
  readonly backing?: 'anonymous' | 'memfd';
}

/** One block of guest RAM. */
export class RamBlock {
  readonly pages: number;
  /** The migration dirty log of the block (one bit per host page) while logging is on. */
  dirty: DirtyBitmap | undefined;

  constructor(
    readonly name: string,
    readonly gpa: bigint,
    readonly size: bigint,
    /** The host memory behind the block. */
    readonly mapping: HostMapping,
    pageSize: number,
    /** The file behind the block (a memfd, mapped shared from offset 0), when it has one; the block owns it. */
    readonly fd?: number,
  ) {
    this.pages = Number(size / BigInt(pageSize));
  }

  /** The host virtual address of the block's first byte (what DMA maps point at). */
  get hva(): bigint {
    return this.mapping.addr;
  }

  /** The last guest physical address inside the block. */
  get last(): bigint {
    return this.gpa + this.size - 1n;
  }
}

/** Guest RAM made of blocks, and its migration dirty log. */
export class GuestMemory {
  readonly blocks: readonly RamBlock[];
  /** The page size of the blocks and of their dirty logs (one bit per page): the host's. */
  readonly pageSize: number;

  /** Guest memory over blocks already mapped (in pages of `pageSize`); `allocate` maps them for you. */
  constructor(blocks: readonly RamBlock[], pageSize: number, private readonly fileHost?: HostKernel) {
    this.blocks = blocks;
    this.pageSize = pageSize;
  }

  /** The block whose host memory holds [hva, hva + length), and the offset there. */
  findByHva(hva: bigint, length: bigint): { block: RamBlock; offset: bigint } | undefined {
    for (const block of this.blocks) {
      if (hva >= block.hva && hva + length <= block.hva + block.size) return { block, offset: hva - block.hva };
    }
    return undefined;
  }

  /**
   * Allocate the blocks with `host.mmap` (private, anonymous, no swap reservation).
   * @throws ConfigError (option `memory`, naming the block) for a block that is empty, not page
   *   aligned, larger than {@link MAX_RAM_BLOCK_SIZE}, reaching past 2^64 or overlapping another,
   *   checked before anything is mapped; and for a block the host cannot map (ENOMEM for more
   *   address space than it has), with the HostError as `cause` and the blocks mapped so far unmapped.
   */
  static allocate(host: HostKernel, specs: readonly RamSpec[], options: GuestMemoryOptions = {}): GuestMemory {
    const blocks: RamBlock[] = [];
    const memfd = options.backing === 'memfd';
    for (const s of checkRamSpecs(specs, host.pageSize)) {
      let fd: number | undefined;
      let mapping: HostMapping;
      try {
        if (memfd) {
          fd = host.memfdCreate(`guest-ram:${s.name}`, MFD_CLOEXEC);
          host.ftruncate(fd, s.size);
        }
        // Exact: checkRamSpecs keeps every size within Number.MAX_SAFE_INTEGER.
        mapping = fd === undefined
          ? host.mmap(Number(s.size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0n)
          : host.mmap(Number(s.size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0n);
      } catch (e) {
        if (fd !== undefined) closeQuietly(host, fd);
        for (const b of blocks) releaseBlock(host, b);
        if (!(e instanceof HostError)) throw e;
        throw ramSpecError(s, `cannot be ${memfd ? 'allocated in a memfd' : 'mapped'}: ${e.syscall} -> ${e.errno}`, e);
      }
      blocks.push(new RamBlock(s.name, s.gpa, s.size, mapping, host.pageSize, fd));
    }
    return new GuestMemory(blocks, host.pageSize, memfd ? host : undefined);
  }

  /** The block holding `gpa`. */
  find(gpa: bigint): RamBlock | undefined {
    return this.blocks.find((b) => gpa >= b.gpa && gpa <= b.last);
  }

  /** The block and offset of [gpa, gpa + length), which must lie in one block. */
  locate(gpa: bigint, length: number): { block: RamBlock; offset: number } {
    const block = this.find(gpa);
    if (!block || gpa + BigInt(length) - 1n > block.last) {
      throw new ArgumentError(`guest range 0x${gpa.toString(16)} (+${length}) is not inside one RAM block`);
    }
    return { block, offset: Number(gpa - block.gpa) };
  }

  /** A live view of guest memory (no copy), within one block and at most 4 GiB. */
  view(gpa: bigint, length: number): Uint8Array {
    const { block, offset } = this.locate(gpa, length);
    return block.mapping.view(offset, length);
  }

  read(gpa: bigint, length: number): Uint8Array {
    return this.view(gpa, length).slice();
  }

  /** A vCPU-style write: stores the bytes and marks their pages in the dirty log. */
  write(gpa: bigint, data: Uint8Array): void {
    const { block, offset } = this.locate(gpa, data.byteLength);
    block.mapping.view(offset, data.byteLength).set(data);
    if (block.dirty && data.byteLength > 0) this.#markPages(block.dirty, offset, data.byteLength);
  }

  /** Whether the dirty log is on. */
  get logging(): boolean {
    return this.blocks.length > 0 && this.blocks[0]!.dirty !== undefined;
  }

  /** Start the dirty log: every block gets a clear bitmap. */
  startDirtyLog(): void {
    for (const b of this.blocks) b.dirty ??= new DirtyBitmap(b.pages);
  }

  /** Stop the dirty log and drop its bitmaps. */
  stopDirtyLog(): void {
    for (const b of this.blocks) b.dirty = undefined;
  }

  /**
   * Mark [gpa, gpa + length) dirty (a device wrote it, or everything counts as dirty); returns
   * the pages newly marked. Addresses outside guest RAM are ignored.
   */
  markDirty(gpa: bigint, length: bigint): number {
    let newly = 0;
    for (const b of this.blocks) {
      const start = gpa > b.gpa ? gpa : b.gpa;
      const end = gpa + length - 1n < b.last ? gpa + length - 1n : b.last;
      if (start > end || !b.dirty) continue;
      newly += this.#markPages(b.dirty, Number(start - b.gpa), Number(end - start + 1n));
    }
    return newly;
  }

  /** OR a report in: bit i of `bitmap` marks the page at gpa + i pages dirty. Returns the pages newly marked. */
  mergeDirty(gpa: bigint, bitmap: DirtyBitmap): number {
    const block = this.find(gpa);
    if (block?.dirty && gpa === block.gpa && bitmap.pages === block.pages) return block.dirty.merge(bitmap);
    let newly = 0;
    const page = BigInt(this.pageSize);
    bitmap.forEachRun((start, length) => {
      newly += this.markDirty(gpa + BigInt(start) * page, BigInt(length) * page);
    });
    return newly;
  }

  /** Unmap every block. The memory must not be used afterwards. */
  free(): void {
    for (const b of this.blocks) {
      if (this.fileHost) releaseBlock(this.fileHost, b);
      else b.mapping.unmap();
    }
  }

  #markPages(bitmap: DirtyBitmap, offset: number, length: number): number {
    const first = Math.floor(offset / this.pageSize);
    const last = Math.floor((offset + length - 1) / this.pageSize);
    return bitmap.setRange(first, last - first + 1);
  }
}

/** Unmap a block and close its file; both are released even when a call fails. */
function releaseBlock(host: HostKernel, b: RamBlock): void {
  try {
    b.mapping.unmap();
  } finally {
    if (b.fd !== undefined) closeQuietly(host, b.fd);
  }
}

function closeQuietly(host: HostKernel, fd: number): void {
  try {
    host.close(fd);
  } catch {
    // close(2) frees the descriptor even when it reports an error.
  }
}
