// KVM's dirty log as a RAM dirty-log provider: KVM_MEM_LOG_DIRTY_PAGES on every slot while the
// migration logs, harvested per slot with KVM_GET_DIRTY_LOG then KVM_CLEAR_DIRTY_LOG (manual
// protect: clearing re-protects exactly the pages taken), straight into each RAM block's dirty
// log (the bitmap's `incoming` area, merged in bulk). The dirty ring is not used: with 4096
// entries it overflowed on kvm_pvm and lost pages.

import { DirtyBitmap, withKernelBuffer, type GuestMemory, type HostKernel } from '@vmmkit/core';
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from '@vmmkit/core/uapi';
import { KVM_CLEAR_DIRTY_LOG, KVM_GET_DIRTY_LOG, KVM_MEM_LOG_DIRTY_PAGES, kvm_clear_dirty_log, kvm_dirty_log } from '@vmmkit/core/uapi';
import type { RamDirtyLogProvider } from '@vmmkit/migration';
import { KvmError } from './kvm-errors.js';
import type { KvmMemslots, Memslot } from './kvm-memslots.js';

/** Test hook: what a sync should "forget" — proves a lost dirty page is caught. */
export interface DirtyLogFault {
  /** Drop this page (block page number) from every harvest of the block named `block`. */
  readonly block: string;
  readonly page: number;
}

export class KvmDirtyLog implements RamDirtyLogProvider {
  readonly name = 'kvm-dirty-log';
  /** Set by tests to break the log on purpose. */
  fault: DirtyLogFault | undefined;
  /** Bitmaps for slots that cover part of a block, by slot. */
  readonly #partial = new Map<number, DirtyBitmap>();

  constructor(
    private readonly host: HostKernel,
    private readonly vmFd: number,
    private readonly memslots: KvmMemslots,
    /** Waits until the vCPUs are stopped when the VM is paused: the last sync must see all. */
    private readonly quiesced: () => Promise<void>,
  ) {}

  /**
   * Turn logging on, then clear and re-protect every slot: with KVM_DIRTY_LOG_INITIALLY_SET the
   * log starts full, and the migration counts all of RAM dirty already.
   */
  start(_memory: GuestMemory): Promise<void> | void {
    this.memslots.setLogging(true);
    try {
      for (const m of this.memslots.slots) if (m.flags & KVM_MEM_LOG_DIRTY_PAGES) this.#clearAll(m);
    } catch (e) {
      this.memslots.setLogging(false);
      throw e;
    }
  }

  async sync(memory: GuestMemory): Promise<number> {
    await this.quiesced();
    let newly = 0;
    for (const m of this.memslots.slots) {
      if (m.readonly) continue;
      newly += await this.#harvest(memory, m);
    }
    return newly;
  }

  stop(_memory: GuestMemory): void {
    this.memslots.setLogging(false);
    this.#partial.clear();
  }

  /** GET then CLEAR one slot into its block's log; returns pages newly marked. */
  async #harvest(memory: GuestMemory, m: Memslot): Promise<number> {
    const pages = Number(m.size / BigInt(memory.pageSize));
    const whole = m.offset === 0n && m.size === m.block.size && m.block.dirty !== undefined;
    const bitmap = whole ? m.block.dirty! : this.#partialBitmap(m.slot, pages);
    const report = bitmap.incomingFor(pages);
    await withKernelBuffer(this.host, report, (addr) => {
      KvmError.wrap(`read the dirty log of memslot ${m.slot}`, () =>
        this.host.ioctl(this.vmFd, KVM_GET_DIRTY_LOG, kvm_dirty_log.encode({ slot: m.slot, dirty_bitmap: addr })));
      KvmError.wrap(`clear the dirty log of memslot ${m.slot}`, () =>
        this.host.ioctl(this.vmFd, KVM_CLEAR_DIRTY_LOG, kvm_clear_dirty_log.encode({ slot: m.slot, first_page: 0n, num_pages: pages, dirty_bitmap: addr })));
    });
    const fault = this.fault;
    if (fault && fault.block === m.block.name) {
      const bit = fault.page - Number(m.offset / BigInt(memory.pageSize));
      if (bit >= 0 && bit < pages) report[bit >> 3]! &= ~(1 << (bit & 7));
    }
    if (whole) return bitmap.mergeIncoming();
    bitmap.mergeIncoming();
    const newly = memory.mergeDirty(m.gpa, bitmap);
    bitmap.clear();
    return newly;
  }

  #clearAll(m: Memslot): void {
    const pages = Number(m.size / BigInt(this.host.pageSize));
    const ones = new Uint8Array(DirtyBitmap.byteLength(pages)).fill(0xff);
    // A synchronous bounce: start() runs before any harvest needs the bitmaps.
    const mapping = this.host.mapMemory?.(ones);
    const bounce = mapping ? undefined : this.host.mmap(ones.byteLength, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
    try {
      bounce?.bytes.set(ones);
      const addr = mapping?.addr ?? bounce!.addr;
      KvmError.wrap(`clear the dirty log of memslot ${m.slot}`, () =>
        this.host.ioctl(this.vmFd, KVM_CLEAR_DIRTY_LOG, kvm_clear_dirty_log.encode({ slot: m.slot, first_page: 0n, num_pages: pages, dirty_bitmap: addr })));
    } finally {
      mapping?.unmap();
      bounce?.unmap();
    }
  }

  #partialBitmap(slot: number, pages: number): DirtyBitmap {
    let b = this.#partial.get(slot);
    if (!b) this.#partial.set(slot, (b = new DirtyBitmap(pages)));
    return b;
  }
}
