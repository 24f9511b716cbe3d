// The destination's account of RAM pages whose data did not match its digest. While the guest
// runs, a page can change between the source's digest and its send: such a page is dirty and is
// sent again, so a mismatch only counts if no later copy of the page replaces it.

import { DirtyBitmap, type GuestMemory } from '@vmmkit/core';
import type { AppliedRamRecord } from './ram-channel-read.js';
import { MigrationStreamError } from '../migration-errors.js';

export class CorruptPages {
  /** Per RAM block, the pages waiting for a good copy; allocated on the first mismatch. */
  readonly #blocks: (DirtyBitmap | undefined)[] = [];
  /** The offset of the latest record with a mismatch, for the refusal. */
  #lastOffset = 0;
  #pending = 0;

  constructor(private readonly memory: GuestMemory) {}

  /** Pages still waiting for a good copy. */
  get pending(): number {
    return this.#pending;
  }

  /** A RAM record was applied: its good pages replace earlier bad copies, its bad ones wait. */
  note(record: AppliedRamRecord): void {
    const bad = record.corruptPages ?? NONE;
    if (this.#pending === 0 && bad.length === 0) return;
    let bitmap = this.#blocks[record.block];
    if (!bitmap) {
      if (bad.length === 0) return;
      bitmap = this.#blocks[record.block] = new DirtyBitmap(this.memory.blocks[record.block]!.pages);
    }
    // setRange counts the bits it newly set: the rest were bad pages this record replaces.
    this.#pending -= record.count - bitmap.setRange(record.first, record.count);
    bitmap.clearRange(record.first, record.count);
    for (const page of bad) bitmap.set(page);
    this.#pending += bad.length;
    if (bad.length > 0) this.#lastOffset = record.offset;
  }

  /**
   * Everything has arrived: refuse if a page is still bad.
   * @throws MigrationStreamError (`bad-checksum`) naming how many pages and the first of them.
   */
  check(): void {
    if (this.#pending === 0) return;
    const index = this.#blocks.findIndex((b) => b !== undefined && b.nextSetBit(0) >= 0);
    const block = this.memory.blocks[index]!;
    const first = this.#blocks[index]!.nextSetBit(0);
    throw new MigrationStreamError('bad-checksum', 'RAM_PAGES', this.#lastOffset,
      `${this.#pending} page(s) arrived corrupted and were not sent again (the first: page ${first} of RAM block ${index} '${block.name}')`);
  }
}

const NONE: readonly number[] = [];
