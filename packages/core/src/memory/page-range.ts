// The whole pages inside a byte range: what a DMA map or a dirty log can cover of a section
// (QEMU's vfio_get_section_iova_range rounds the same way).

/** The whole `pageSize` pages inside [start, start + size), or undefined if there are none. */
export function pageRange(start: bigint, size: bigint, pageSize: number): { start: bigint; size: bigint } | undefined {
  const page = BigInt(pageSize);
  const first = ((start + page - 1n) / page) * page;
  const end = ((start + size) / page) * page;
  return first < end ? { start: first, size: end - first } : undefined;
}

/** Pages of `pageSize` needed to cover `size` bytes. */
export function pagesIn(size: bigint, pageSize: number): number {
  return Number((size + BigInt(pageSize) - 1n) / BigInt(pageSize));
}
