// The selftest ops that look inside a mock domain (selftest.c): IOMMU_TEST_OP_DIRTY, which sets
// IOPTE dirty bits the way a device write would, and IOMMU_TEST_OP_MD_CHECK_MAP.

import { MOCK_IO_PAGE_SIZE, type iommu_test_cmd } from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import type { UserSpan } from '../memory/user-memory.js';
import type { Hwpt } from './hwpt.js';
import type { IommufdFile } from './iommufd-file.js';
import { hex } from './iova-range.js';
import { isMockUnit } from './mock-iommu.js';
import type { UcmdOf } from './ucmd.js';

/** The check_map member of struct iommu_test_cmd. */
interface CheckMap {
  readonly iova: bigint;
  readonly length: bigint;
  readonly uptr: bigint;
}

/** get_md_pagetable: a paging HWPT (ENOENT) whose domain is the mock's (EINVAL). */
function mockHwpt(ctx: IommufdFile, id: number): Hwpt {
  const hwpt = ctx.objects.get<Hwpt>(id, 'hwpt_paging');
  if (!isMockUnit(hwpt.domain.unit)) fail('EINVAL', `hwpt ${id} is not a mock domain`);
  return hwpt;
}

/** Set bit indices of a little-endian bitmap, in order. */
function* setBits(bytes: Uint8Array, count: bigint): Generator<bigint> {
  for (let i = 0; i < bytes.byteLength; i++) {
    const byte = bytes[i]!;
    if (!byte) continue;
    for (let b = 0; b < 8; b++) {
      const bit = BigInt(i * 8 + b);
      if (byte & (1 << b) && bit < count) yield bit;
    }
  }
}

/** The most bits IOMMU_TEST_OP_DIRTY reads: SZ_16M bytes of bitmap. */
const MAX_DIRTY_BITS = 128n << 20n;
const U64_MAX = (1n << 64n) - 1n;

/**
 * IOMMU_TEST_OP_DIRTY: mark dirty, as a device write would, the IO pages whose bits are set in
 * the user's bitmap (bit n: IOVA iova + n * page_size), with tracking on (EINVAL). Linux 6.12's
 * mock looks each page up at index (iova + n * page_size) / page_size of its 2 KiB page table
 * (exact for page_size 2 KiB) and counts the pages it found; 7.x's marks the IOPTE holding the
 * IOVA itself and counts every bit, mapped or not.
 */
export function mockDirty(ctx: IommufdFile, ucmd: UcmdOf<typeof iommu_test_cmd>): number {
  const { iova, length, page_size: pageSize, uptr } = ucmd.get('dirty');
  if (!pageSize || !length || iova % pageSize || length % pageSize || !uptr) fail('EINVAL', 'bad dirty range or no bitmap');
  const max = length / pageSize;
  if (max > MAX_DIRTY_BITS) fail('EOVERFLOW', `${max} pages is more than the mock reads`);
  const hwpt = mockHwpt(ctx, ucmd.get('id'));
  if (!hwpt.domain.tracking) fail('EINVAL', `hwpt ${hwpt.id} does not track dirty pages`);
  const bitmap = ctx.kernel.memory.read(uptr, Number((max + 7n) / 8n));
  const genericPt = ctx.kernel.linux.pageTable === 'generic-pt';
  const areas = hwpt.ioas.iopt.areas;
  let count = 0n;
  for (const i of setBits(bitmap, max)) {
    const at = (iova + i * pageSize) & U64_MAX;
    const page = genericPt ? at : (at / pageSize) * MOCK_IO_PAGE_SIZE;
    const mapped = areas.find(page) !== undefined;
    if (mapped) hwpt.domain.dirty.setRange(hwpt.domain.index(page), 1);
    if (mapped || genericPt) count++;
  }
  const dirty = ucmd.get('dirty');
  ucmd.set('dirty', { ...dirty, out_nr_dirty: count });
  ucmd.respond();
  return 0;
}

/** The same memory behind two span lists. */
function sameMemory(a: readonly UserSpan[], b: readonly UserSpan[]): boolean {
  const [x, y] = [a.filter((s) => s.length), b.filter((s) => s.length)];
  let [i, j, oi, oj] = [0, 0, 0, 0];
  while (i < x.length && j < y.length) {
    const [s, t] = [x[i]!, y[j]!];
    if (s.backing !== t.backing || s.offset + oi !== t.offset + oj) return false;
    const n = Math.min(s.length - oi, t.length - oj);
    oi += n;
    oj += n;
    if (oi === s.length) [i, oi] = [i + 1, 0];
    if (oj === t.length) [j, oj] = [j + 1, 0];
  }
  return i === x.length && j === y.length;
}

/**
 * IOMMU_TEST_OP_MD_CHECK_MAP: every IO page of [iova, +length) maps the memory at uptr. EINVAL
 * for a misaligned or wrapping range (6.12 checks that before looking the HWPT up, 7.x after);
 * then page by page, EFAULT where the user page is not mapped and EINVAL where the IOVA does not
 * map it.
 */
export function checkMockMap(ctx: IommufdFile, id: number, check: CheckMap): number {
  const { iova, length, uptr } = check;
  const page = MOCK_IO_PAGE_SIZE;
  const checkRange = (): void => {
    if (iova % page || length % page || uptr % page || uptr + length > U64_MAX) fail('EINVAL', 'unaligned or wrapping check');
  };
  const genericPt = ctx.kernel.linux.pageTable === 'generic-pt';
  if (!genericPt) checkRange();
  const hwpt = mockHwpt(ctx, id);
  if (genericPt) checkRange();
  const memory = ctx.kernel.memory;
  for (let off = 0n; off < length; off += page) {
    // get_user_pages_fast of the CPU page holding the user address.
    memory.resolve((uptr + off) & ~4095n, 4096, 'read');
    const at = (iova + off) & U64_MAX;
    const area = hwpt.ioas.iopt.areas.find(at)?.value;
    if (!area) fail('EINVAL', `IOVA ${hex(at)} is not mapped`);
    const mapped = area.pages.memoryAt(memory, area.byteOf(at), Number(page), false);
    if (!sameMemory(mapped, memory.resolve(uptr + off, Number(page), 'read'))) fail('EINVAL', `IOVA ${hex(at)} does not map the user memory at ${hex(uptr + off)}`);
  }
  return 0;
}
