// An address space and its listeners (QEMU's AddressSpace + MemoryListener): sections of RAM or
// of a guest IOMMU appear and disappear, and listeners such as VFIO containers follow them.

import { FirstFailure } from '../errors/first-failure.js';
import { ArgumentError } from '../errors/vmm-error-base.js';
import type { IommuMemoryRegion } from './iommu-memory-region.js';
import type { RamBlock } from './guest-memory.js';

/** A piece of an address space. */
export type MemorySection =
  | {
      readonly kind: 'ram';
      /** Address of the section in this address space (a GPA for system memory). */
      readonly start: bigint;
      readonly size: bigint;
      readonly block: RamBlock;
      /** Offset of the section inside its RAM block. */
      readonly offset: bigint;
      readonly readonly: boolean;
    }
  | {
      /** A guest IOMMU translates this window: DMA mappings follow its map/unmap notifications. */
      readonly kind: 'iommu';
      readonly start: bigint;
      readonly size: bigint;
      readonly region: IommuMemoryRegion;
    };

/** Follows the sections of an address space. Both hooks may be async; failures propagate. */
export interface MemoryListener {
  regionAdd?(section: MemorySection): void | Promise<void>;
  regionDel?(section: MemorySection): void | Promise<void>;
}

/** Sections of memory and the listeners that follow them. */
export class AddressSpace {
  readonly #sections: MemorySection[] = [];
  readonly #listeners: MemoryListener[] = [];

  constructor(readonly name: string) {}

  get sections(): readonly MemorySection[] {
    return this.#sections;
  }

  /**
   * Add a section and tell every listener. If one listener fails, those already told are told
   * to delete it again, and the error propagates: the address space is unchanged.
   */
  async addSection(section: MemorySection): Promise<void> {
    const told: MemoryListener[] = [];
    try {
      for (const l of this.#listeners) {
        await l.regionAdd?.(section);
        told.push(l);
      }
    } catch (e) {
      for (const l of told.reverse()) await l.regionDel?.(section);
      throw e;
    }
    this.#sections.push(section);
  }

  /** Remove a section; every listener is told (newest first), even if one fails. */
  async removeSection(section: MemorySection): Promise<void> {
    const i = this.#sections.indexOf(section);
    if (i < 0) throw new ArgumentError(`${this.name}: section at 0x${section.start.toString(16)} is not present`);
    this.#sections.splice(i, 1);
    await FirstFailure.forEach([...this.#listeners].reverse(), (l) => l.regionDel?.(section));
  }

  /**
   * Register a listener and replay every section to it (memory_listener_register). If the
   * replay fails, the sections already replayed are deleted again and the error propagates.
   */
  async addListener(listener: MemoryListener): Promise<void> {
    const replayed: MemorySection[] = [];
    try {
      for (const s of this.#sections) {
        await listener.regionAdd?.(s);
        replayed.push(s);
      }
    } catch (e) {
      await FirstFailure.forEach(replayed.reverse(), (s) => listener.regionDel?.(s));
      throw e;
    }
    this.#listeners.push(listener);
  }

  /** Unregister a listener, deleting every section from it (newest first). */
  async removeListener(listener: MemoryListener): Promise<void> {
    const i = this.#listeners.indexOf(listener);
    if (i < 0) return;
    this.#listeners.splice(i, 1);
    await FirstFailure.forEach([...this.#sections].reverse(), (s) => listener.regionDel?.(s));
  }
}
