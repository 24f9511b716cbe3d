// Views of guest RAM blocks for the page path. A block that fits one typed array is reached
// through its mapping's `bytes` (one view the mapping keeps, and checks is still mapped on each
// use); a larger one through windows of at most WINDOW_PAGES pages, aligned to that.

import { MAX_VIEW_LENGTH, type RamBlock } from '@vmmkit/core';
import { STREAM_PAGE_SIZE as PAGE } from './records.js';

/** Pages per window (1 GiB) of a block too large for one view. */
export const WINDOW_PAGES = 1 << 18;

/** Whether the block fits one typed array (its mapping has `bytes`). */
export function wholeBlock(block: RamBlock): boolean {
  return block.mapping.length <= MAX_VIEW_LENGTH;
}

/** A view of pages [first, first + count) of `block` (inside it: the caller checked). */
export function ramView(block: RamBlock, first: number, count: number): Uint8Array {
  if (wholeBlock(block)) return block.mapping.bytes.subarray(first * PAGE, (first + count) * PAGE);
  return block.mapping.view(first * PAGE, count * PAGE);
}

/** The view of `block` from page `base` on: the whole block, or up to WINDOW_PAGES pages. */
export function ramWindow(block: RamBlock, base: number): Uint8Array {
  if (wholeBlock(block)) return block.mapping.bytes;
  const pages = Math.min(WINDOW_PAGES, block.pages - base);
  return block.mapping.view(base * PAGE, pages * PAGE);
}
