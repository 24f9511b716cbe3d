// The client's DMA windows (DMA_MAP / DMA_UNMAP): each file-backed window mapped into this
// process at its file offset, so the model's DMA is a memory copy; windows without a file are
// reached through DMA_READ / DMA_WRITE messages by the caller.

import { HostError, type HostKernel, type HostMapping } from '@vmmkit/core';
import { MAP_SHARED, PROT_READ, PROT_WRITE, VFIO_DMA_UNMAP_FLAG_ALL } from '@vmmkit/core/uapi';
import {
  VFIO_USER_F_DMA_REGION_READ, VFIO_USER_F_DMA_REGION_WRITE, type VfioUserDmaMap, type VfioUserDmaUnmap,
} from '@vmmkit/core/vfio-user';
import { refuse } from './request-error.js';

/** One DMA window. `mapping` is absent for a window the client serves by messages. */
export interface DmaWindow {
  readonly address: bigint;
  readonly size: bigint;
  readonly readable: boolean;
  readonly writable: boolean;
  readonly mapping?: HostMapping;
}

/** Where an access lands: the window and the offset in it. */
export interface DmaTarget {
  readonly window: DmaWindow;
  readonly offset: number;
}

/** The DMA windows of one connection. It owns their mappings and unmaps them. */
export class DmaWindows {
  // Sorted by address; windows never overlap.
  readonly #windows: DmaWindow[] = [];

  constructor(private readonly host: HostKernel, private readonly maxWindows: number) {}

  get count(): number {
    return this.#windows.length;
  }

  /**
   * DMA_MAP. Takes `fd` (closed here in every case: a mapping keeps its file open). EEXIST for a
   * window that overlaps another, ENOSPC beyond max_dma_maps, the mmap's errno if it fails.
   */
  map(m: VfioUserDmaMap, fd: number | undefined): void {
    try {
      const end = m.address + m.size;
      if (this.#windows.some((w) => w.address < end && m.address < w.address + w.size)) {
        refuse('EEXIST', `window 0x${m.address.toString(16)}+0x${m.size.toString(16)} overlaps a mapped one`);
      }
      if (this.#windows.length >= this.maxWindows) refuse('ENOSPC', `${this.maxWindows} DMA windows are mapped already`);
      const readable = (m.flags & VFIO_USER_F_DMA_REGION_READ) !== 0;
      const writable = (m.flags & VFIO_USER_F_DMA_REGION_WRITE) !== 0;
      let mapping: HostMapping | undefined;
      if (fd !== undefined) {
        if (m.size > BigInt(Number.MAX_SAFE_INTEGER)) refuse('EINVAL', 'window too large to map');
        // Map what the client allows; a write-only window still needs PROT_READ on x86.
        const prot = PROT_READ | (writable ? PROT_WRITE : 0);
        mapping = this.host.mmap(Number(m.size), prot, MAP_SHARED, fd, m.offset);
      }
      const window: DmaWindow = { address: m.address, size: m.size, readable, writable, ...(mapping ? { mapping } : {}) };
      const at = this.#windows.findIndex((w) => w.address > m.address);
      this.#windows.splice(at < 0 ? this.#windows.length : at, 0, window);
    } finally {
      if (fd !== undefined) closeQuietly(this.host, fd);
    }
  }

  /**
   * DMA_UNMAP: the window exactly at [address, address + size), or every window with
   * UNMAP_FLAG_ALL. ENOENT when no window matches. The mapping is gone before this returns, so
   * no DMA can reach the memory afterwards.
   */
  unmap(u: VfioUserDmaUnmap): void {
    if (u.flags & VFIO_DMA_UNMAP_FLAG_ALL) {
      this.dispose();
      return;
    }
    const i = this.#windows.findIndex((w) => w.address === u.address && w.size === u.size);
    if (i < 0) refuse('ENOENT', `no window is mapped at 0x${u.address.toString(16)}+0x${u.size.toString(16)}`);
    const [w] = this.#windows.splice(i, 1);
    w!.mapping?.unmap();
  }

  /** The windows as IOVA ranges (what DMA logging watches when the client names none). */
  ranges(): { iova: bigint; length: bigint }[] {
    return this.#windows.map((w) => ({ iova: w.address, length: w.size }));
  }

  /** The window holding [address, address + length), or undefined when the range is not all in one. */
  find(address: bigint, length: number): DmaTarget | undefined {
    for (const w of this.#windows) {
      if (address >= w.address && address + BigInt(length) <= w.address + w.size) return { window: w, offset: Number(address - w.address) };
    }
    return undefined;
  }

  /** Unmap every window (the client went away or asked to). Unmapping keeps going past a failure. */
  dispose(): void {
    const windows = this.#windows.splice(0);
    let first: unknown;
    for (const w of windows) {
      try {
        w.mapping?.unmap();
      } catch (e) {
        first ??= e;
      }
    }
    if (first) throw first;
  }
}

/** close(2) an fd this server took, ignoring the errno (the fd is released anyway). */
export function closeQuietly(host: HostKernel, fd: number): void {
  try {
    host.close(fd);
  } catch (e) {
    if (!(e instanceof HostError)) throw e;
  }
}
