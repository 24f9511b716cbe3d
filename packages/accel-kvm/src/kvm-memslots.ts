// KVM's memslots following the VM's system memory (QEMU's kvm_memory_listener): each RAM
// section becomes a slot over the same host memory, and the dirty-log flag is set on all of them
// while a migration logs.

import { ArgumentError, type HostKernel, type MemoryListener, type MemorySection, type RamBlock } from '@vmmkit/core';
import { KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_SET_USER_MEMORY_REGION, kvm_userspace_memory_region } from '@vmmkit/core/uapi';
import { KvmError } from './kvm-errors.js';

/** One memslot: a RAM section of the VM. */
export interface Memslot {
  readonly slot: number;
  readonly gpa: bigint;
  readonly size: bigint;
  readonly block: RamBlock;
  /** Where the slot starts in its block, in bytes. */
  readonly offset: bigint;
  readonly readonly: boolean;
  flags: number;
}

/** The memslots of one VM fd. */
export class KvmMemslots implements MemoryListener {
  readonly #slots = new Map<MemorySection, Memslot>();
  #logging = false;

  constructor(private readonly host: HostKernel, private readonly vmFd: number) {}

  /** The slots, in slot order. */
  get slots(): readonly Memslot[] {
    return [...this.#slots.values()].sort((a, b) => a.slot - b.slot);
  }

  regionAdd(section: MemorySection): void {
    if (section.kind !== 'ram') return;
    const slot = this.#freeSlot();
    const flags = (section.readonly ? KVM_MEM_READONLY : 0) | (this.#logging && !section.readonly ? KVM_MEM_LOG_DIRTY_PAGES : 0);
    const m: Memslot = { slot, gpa: section.start, size: section.size, block: section.block, offset: section.offset, readonly: section.readonly, flags };
    this.#set(m, flags, `map RAM block '${section.block.name}' as memslot ${slot}`);
    this.#slots.set(section, m);
  }

  regionDel(section: MemorySection): void {
    const m = this.#slots.get(section);
    if (!m) return;
    // A slot of size 0 deletes it.
    this.#write(m, 0, 0n, `unmap memslot ${m.slot} (RAM block '${m.block.name}')`);
    this.#slots.delete(section);
  }

  /** Whether the slots log dirty pages. */
  get logging(): boolean {
    return this.#logging;
  }

  /**
   * Set or clear KVM_MEM_LOG_DIRTY_PAGES on every writable slot. On failure the slots already
   * changed are put back, and the error names the slot that failed.
   */
  setLogging(on: boolean): void {
    if (on === this.#logging) return;
    const changed: Memslot[] = [];
    try {
      for (const m of this.slots) {
        if (m.readonly) continue;
        this.#set(m, on ? m.flags | KVM_MEM_LOG_DIRTY_PAGES : m.flags & ~KVM_MEM_LOG_DIRTY_PAGES, `${on ? 'start' : 'stop'} dirty logging on memslot ${m.slot}`);
        changed.push(m);
      }
    } catch (e) {
      for (const m of changed.reverse()) {
        try {
          this.#set(m, on ? m.flags & ~KVM_MEM_LOG_DIRTY_PAGES : m.flags | KVM_MEM_LOG_DIRTY_PAGES, 'undo');
        } catch {
          // The first failure is the one to report.
        }
      }
      throw e;
    }
    this.#logging = on;
  }

  #set(m: Memslot, flags: number, step: string): void {
    this.#write(m, flags, m.size, step);
    m.flags = flags;
  }

  #write(m: Memslot, flags: number, size: bigint, step: string): void {
    const region = kvm_userspace_memory_region.encode({
      slot: m.slot, flags, guest_phys_addr: m.gpa, memory_size: size, userspace_addr: m.block.hva + m.offset,
    });
    KvmError.wrap(step, () => this.host.ioctl(this.vmFd, KVM_SET_USER_MEMORY_REGION, region));
  }

  #freeSlot(): number {
    const used = new Set([...this.#slots.values()].map((m) => m.slot));
    for (let slot = 0; ; slot++) {
      if (!used.has(slot)) return slot;
      if (slot > 32_000) throw new ArgumentError('no free memslot', 'section');
    }
  }
}
