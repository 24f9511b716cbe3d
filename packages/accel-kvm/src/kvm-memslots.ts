// KVM's memslots following the VM's system memory (QEMU's kvm_memory_listener): each RAM
// section becomes a slot over the same host memory, and the dirty-log flag is set on all of them
// while a migration logs. Slots over device memory (the mmapped parts of PCI BARs) are given out
// here too, so that slot numbers never collide; they are never dirty-logged and are not RAM.

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

/**
 * A memslot over memory a device mapped in this process (part of a BAR): the guest reaches it
 * without exits. Not RAM: never dirty-logged, not in `slots`, not migrated.
 */
export interface DeviceMemslot {
  readonly slot: number;
  readonly gpa: bigint;
  readonly size: bigint;
  /** The host virtual address the slot maps. */
  readonly hva: bigint;
  /** What the slot maps, for messages (`BAR2 of 'nic0' +0x0`). */
  readonly what: string;
}

/** The memslots of one VM fd. */
export class KvmMemslots implements MemoryListener {
  readonly #slots = new Map<MemorySection, Memslot>();
  readonly #deviceSlots = new Set<DeviceMemslot>();
  #logging = false;

  constructor(private readonly host: HostKernel, private readonly vmFd: number) {}

  /** The slots over device memory, in slot order. */
  get deviceSlots(): readonly DeviceMemslot[] {
    return [...this.#deviceSlots].sort((a, b) => a.slot - b.slot);
  }

  /**
   * Map `size` bytes of this process's memory at `hva` at guest physical `gpa` as a slot of its
   * own (read-write, never logged).
   * @throws ArgumentError when `gpa`, `size` or `hva` is not page aligned or `size` is 0;
   *   KvmError naming `what` and the slot when KVM refuses (cause HostError: EEXIST where
   *   another slot overlaps).
   */
  addDeviceSlot(what: string, gpa: bigint, size: bigint, hva: bigint): DeviceMemslot {
    const page = BigInt(this.host.pageSize);
    if (size <= 0n || gpa % page !== 0n || size % page !== 0n || hva % page !== 0n) {
      throw new ArgumentError(`memslot for ${what}: 0x${size.toString(16)} bytes at guest 0x${gpa.toString(16)}, host 0x${hva.toString(16)} are not whole pages`, 'gpa');
    }
    const m: DeviceMemslot = { slot: this.#freeSlot(), gpa, size, hva, what };
    this.#writeDevice(m, m.size, `map ${what} at 0x${gpa.toString(16)} (+0x${size.toString(16)}) as memslot ${m.slot}`);
    this.#deviceSlots.add(m);
    return m;
  }

  /**
   * Remove a slot `addDeviceSlot` gave (nothing when it is not there any more).
   * @throws KvmError naming it when KVM refuses; it is still counted as there.
   */
  removeDeviceSlot(m: DeviceMemslot): void {
    if (!this.#deviceSlots.has(m)) return;
    this.#writeDevice(m, 0n, `unmap memslot ${m.slot} (${m.what} at 0x${m.gpa.toString(16)})`);
    this.#deviceSlots.delete(m);
  }

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

  #writeDevice(m: DeviceMemslot, size: bigint, step: string): void {
    const region = kvm_userspace_memory_region.encode({ slot: m.slot, flags: 0, guest_phys_addr: m.gpa, memory_size: size, userspace_addr: m.hva });
    KvmError.wrap(step, () => this.host.ioctl(this.vmFd, KVM_SET_USER_MEMORY_REGION, region));
  }

  #freeSlot(): number {
    const used = new Set([...this.#slots.values(), ...this.#deviceSlots].map((m) => m.slot));
    for (let slot = 0; ; slot++) {
      if (!used.has(slot)) return slot;
      if (slot > 32_000) throw new ArgumentError('no free memslot', 'section');
    }
  }
}
