// The RAM page path (QEMU's ram_save_host_page / ram_load_precopy): dirty pages of a RAM block go
// out as runs of page data straight from guest memory, zero pages as markers only; the destination
// writes them straight into its guest memory.

import { ArgumentError, type DirtyBitmap, type GuestMemory, type RamBlock } from '@vmmkit/core';
import { ramView, ramWindow, WINDOW_PAGES, wholeBlock } from './ram-view.js';
import { checkRamRun } from './record-codec.js';
import { MAX_DATA_PAGES, MAX_ZERO_PAGES, STREAM_PAGE_SIZE, type RamRecord, type RecordInit } from './records.js';
import type { MigrationStreamWriter } from './stream-writer.js';

const PAGE = STREAM_PAGE_SIZE;
// Zero checks and fills on the destination go this many bytes at a time.
const ZERO_STRETCH = 64 * 1024;
const ZEROES = Buffer.alloc(ZERO_STRETCH);

/** What {@link sendDirtyPages} sent. */
export interface RamSendResult {
  /** Pages sent as data (RAM_PAGES). */
  readonly pages: number;
  /** Pages sent as zero markers (RAM_ZERO), without data. */
  readonly zeroPages: number;
  /** Stream bytes written for them. */
  readonly bytes: number;
}

/** Whether the page at `view[offset]` is all zero bytes (memcmp against a zero page). */
export function isZeroPage(view: Uint8Array, offset: number): boolean {
  return ZEROES.compare(view, offset, offset + PAGE, 0, PAGE) === 0;
}

/** A RAM record as {@link forEachDirtyRecord} hands it out. */
export type RamRecordInit = RecordInit<'RAM_PAGES'> | RecordInit<'RAM_ZERO'>;

/**
 * Send every page whose bit is set in `dirty` (one bit per page of RAM block `blockIndex`):
 * runs of non-zero pages as RAM_PAGES records of at most 256 pages, their data handed to the
 * transport as views of guest memory (no copy), and runs of zero pages as RAM_ZERO markers only.
 * The bitmap is left as it is. Resolves once the writer can take more.
 * @throws ArgumentError when the block does not exist or the bitmap is not the block's size.
 */
export async function sendDirtyPages(writer: MigrationStreamWriter, memory: GuestMemory, blockIndex: number, dirty: DirtyBitmap): Promise<RamSendResult> {
  const start = writer.bytesWritten;
  const { pages, zeroPages } = await forEachDirtyRecord(memory, blockIndex, dirty, (record) => writer.write(record));
  return { pages, zeroPages, bytes: writer.bytesWritten - start };
}

/**
 * The records {@link sendDirtyPages} sends, each given to `send` in page order (awaited, so that
 * `send` can hold the walk back). Returns the pages sent as data and as zero markers.
 * @throws ArgumentError when the block does not exist or the bitmap is not the block's size.
 */
export async function forEachDirtyRecord(
  memory: GuestMemory, blockIndex: number, dirty: DirtyBitmap, send: (record: RamRecordInit) => Promise<void>,
): Promise<{ pages: number; zeroPages: number }> {
  const block = memory.blocks[blockIndex];
  if (!block) throw new ArgumentError(`sendDirtyPages: RAM block ${blockIndex} does not exist (there are ${memory.blocks.length})`);
  if (dirty.pages !== block.pages) throw new ArgumentError(`sendDirtyPages: a bitmap of ${dirty.pages} pages for RAM block ${block.name} of ${block.pages}`);
  const words = new Uint32Array(dirty.bytes.buffer, dirty.bytes.byteOffset, dirty.bytes.byteLength >>> 2);
  const totals = { pages: 0, zeroPages: 0 };
  const cursor = new RamCursor(block);
  for (let page = dirty.nextSetBit(0); page >= 0; page = dirty.nextSetBit(page)) {
    const runEnd = nextClearBit(words, page, block.pages);
    await forEachRunRecord(cursor, blockIndex, page, runEnd - page, send, totals);
    page = runEnd;
    if (page >= block.pages) break;
  }
  return totals;
}

/** Views of one RAM block for the page path, the latest window kept for the next run. */
export class RamCursor {
  readonly #windowPages: number;
  #window: Uint8Array | undefined;
  #base = -1;

  constructor(readonly block: RamBlock) {
    this.#windowPages = wholeBlock(block) ? block.pages : WINDOW_PAGES;
  }

  /** The window holding `page`, its first page, and the page after it. */
  at(page: number): { view: Uint8Array; base: number; end: number } {
    const base = page - (page % this.#windowPages);
    if (base !== this.#base) {
      this.#window = ramWindow(this.block, base);
      this.#base = base;
    }
    return { view: this.#window!, base, end: base + this.#windowPages };
  }
}

/**
 * The records of the run of `count` pages from `first` (all inside the cursor's block), as
 * {@link forEachDirtyRecord} makes them, each given to `send`; adds the pages to `totals`.
 */
export async function forEachRunRecord(
  cursor: RamCursor, blockIndex: number, first: number, count: number, send: (record: RamRecordInit) => Promise<void>,
  totals: { pages: number; zeroPages: number },
): Promise<void> {
  const runEnd = first + count;
  let page = first;
  while (page < runEnd) {
    const { view, base, end: windowEnd } = cursor.at(page);
    const stop = Math.min(runEnd, windowEnd);
    // A stretch of pages alike (all zero or all not), up to the record's page limit.
    const zero = isZeroPage(view, (page - base) * PAGE);
    const limit = Math.min(stop, page + (zero ? MAX_ZERO_PAGES : MAX_DATA_PAGES));
    let end = page + 1;
    while (end < limit && isZeroPage(view, (end - base) * PAGE) === zero) end++;
    const n = end - page;
    if (zero) {
      await send({ name: 'RAM_ZERO', block: blockIndex, first: page, count: n });
      totals.zeroPages += n;
    } else {
      const payload = view.subarray((page - base) * PAGE, (end - base) * PAGE);
      await send({ name: 'RAM_PAGES', block: blockIndex, first: page, count: n, payload });
      totals.pages += n;
    }
    page = end;
  }
}

/**
 * Load a RAM record into the destination's guest memory: page data is copied once, straight into
 * a view of the block (not at all when the reader already received it in place); a zero run is zeroed where it is not zero already (so that untouched
 * memory stays unallocated, as QEMU's ram_handle_zero does). Returns the pages the record covers.
 * @throws MigrationStreamError (`outside-ram`) when the run is not inside `memory`.
 */
export function applyRamRecord(memory: GuestMemory, record: RamRecord): number {
  checkRamRun(memory.blocks, record.name, record, record.offset);
  const view = ramView(memory.blocks[record.block]!, record.first, record.count);
  if (record.name === 'RAM_PAGES') {
    let at = 0;
    for (const part of record.parts) {
      // A reader given this memory received the data in place already: nothing to copy.
      if (part.buffer !== view.buffer || part.byteOffset !== view.byteOffset + at) view.set(part, at);
      at += part.byteLength;
    }
    return record.count;
  }
  for (let at = 0; at < view.byteLength; at += ZERO_STRETCH) {
    const stretch = Math.min(view.byteLength - at, ZERO_STRETCH);
    if (ZEROES.compare(view, at, at + stretch, 0, stretch) !== 0) view.fill(0, at, at + stretch);
  }
  return record.count;
}

/** The first clear bit of `words` at or after `from` (a set bit), or `pages`. */
export function nextClearBit(words: Uint32Array, from: number, pages: number): number {
  let index = from >>> 5;
  // Set the bits below `from` so that they do not count as clear.
  let word = ~(words[index]! | ((1 << (from & 31)) - 1));
  while (word === 0) {
    if (++index * 32 >= pages) return pages;
    word = ~words[index]!;
  }
  const bit = index * 32 + (31 - Math.clz32(word & -word));
  return Math.min(bit, pages);
}
