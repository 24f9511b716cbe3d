// The differential fuzzer's HWPT operations (drivers/iommu/iommufd/hw_pagetable.c, device.c):
// IOMMU_HWPT_ALLOC with flags and driver data, IOMMU_GET_HW_INFO, and IOMMU dirty tracking
// (set tracking, read bitmaps with and without NO_CLEAR).

import {
  IOMMU_HW_INFO_FLAG_INPUT_TYPE, IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_DATA_SELFTEST, iommu_hw_info_7_2,
  iommu_hwpt_selftest_7_2, IOMMU_GET_HW_INFO, IOMMU_HWPT_ALLOC, IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_DATA_VTD_S1, IOMMU_HWPT_FAULT_ID_VALID, IOMMU_HWPT_GET_DIRTY_BITMAP,
  IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, IOMMU_HWPT_SET_DIRTY_TRACKING, iommu_hwpt_alloc,
  iommu_hwpt_get_dirty_bitmap, iommu_hwpt_set_dirty_tracking,
} from '@vmmkit/core/uapi';
import { decoded, plain, sized } from './call.js';
import { PAGE, type OpSpec } from './gen.js';
import type { Ref } from './model.js';
import { ioctlStruct, SCRATCH, scratchOut, scratchPtr, type A } from './ops-iommufd.js';

/** A HWPT allocated for dirty tracking (the handles dirty operations mostly aim at). */
export const dirtyHwpt = (args: Readonly<Record<string, unknown>>): boolean => ((args.flags as number) & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) !== 0;

const hwptAlloc: OpSpec = {
  name: 'hwpt.alloc', family: 'iommufd', weight: 7, makes: { out_hwpt_id: 'hwpt' },
  gen(g) {
    const flags = g.flags([IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_FAULT_ID_VALID, IOMMU_HWPT_ALLOC_PASID], 1 << 9);
    const dataType = g.rng.weighted<number>([[0, 70], [IOMMU_HWPT_DATA_VTD_S1, 10], [IOMMU_HWPT_DATA_SELFTEST, 15], [0x1234, 5]]);
    const dataLen = g.rng.weighted<number>([[0, 60], [8, 30], [4, 4], [24, 6]]);
    // The mock makes nested HWPTs and huge-page tables from its own data, which SimHost does not
    // model: with that data the pt is an IOAS (or nothing), and the table type never MOCK_IOMMUPT_HUGE.
    const selftestData = dataType === IOMMU_HWPT_DATA_SELFTEST && dataLen > 0;
    const dev = g.ref('devid');
    const fd = g.ctxOf(dev);
    const pt: Ref = selftestData ? (g.rng.chance(0.9) ? g.strictRef('ioas') : { raw: 0 }) : g.refIn(g.rng.chance(0.75) ? 'ioas' : 'hwpt', fd);
    return {
      fd, dev, pt, flags, dataType, dataLen, table: g.rng.weighted<number>([[0, 80], [2, 10], [0x10, 10]]),
      dataTail: g.rng.chance(0.1) ? 1 : 0, data: scratchPtr(g, SCRATCH.hwpt), fault: g.rng.pick([0, 1, 0xffff]), reserved: g.bad(0.03) ? 1 : 0,
      size: g.sizeMode(),
    };
  },
  run(r, s) {
    const a = s.a as A;
    if (!('raw' in a.data)) {
      const data = r.bytes('scratch', Number(SCRATCH.hwpt), 32).fill(0);
      data.set(iommu_hwpt_selftest_7_2.encode({ iotlb: 0xbadbeef, pagetable_type: a.table }));
      data[a.dataLen > 8 ? 12 : 0] |= a.dataTail; // a non-zero byte past the struct when the data is longer
    }
    const bytes = sized(iommu_hwpt_alloc, {
      flags: a.flags, dev_id: r.id(a.dev), pt_id: r.id(a.pt), data_type: a.dataType, data_len: a.dataLen, data_uptr: r.ptr(a.data),
      fault_id: a.fault, __reserved: a.reserved,
    }, a.size);
    const { outcome } = ioctlStruct(r, a.fd, IOMMU_HWPT_ALLOC, bytes);
    return plain(outcome, outcome.r === 'ok' ? { out_hwpt_id: r.madeId(s.id, 'out_hwpt_id', decoded(iommu_hwpt_alloc, bytes).out_hwpt_id) } : undefined);
  },
};

const hwInfo: OpSpec = {
  name: 'hw_info', family: 'iommufd', weight: 4,
  gen: (g, dev = g.ref('devid')) => ({
    fd: g.ctxOf(dev), dev, flags: g.flags([IOMMU_HW_INFO_FLAG_INPUT_TYPE], 1 << 3), inType: g.rng.pick([0, 0, 1, 0xfeedbeef, 7]),
    dataLen: g.rng.pick([0, 4, 8, 24, 64]), data: scratchPtr(g, SCRATCH.hwInfo), reserved: g.bad(0.03) ? 1 : 0, size: g.sizeMode(),
  }),
  run(r, s) {
    const a = s.a as A;
    if (!('raw' in a.data)) r.bytes('scratch', Number(SCRATCH.hwInfo), 64).fill(0xa5);
    const bytes = sized(iommu_hw_info_7_2, {
      dev_id: r.id(a.dev), flags: a.flags, in_data_type: a.inType, data_len: a.dataLen, data_uptr: r.ptr(a.data), __reserved: [a.reserved, 0, 0],
    }, a.size);
    const { outcome } = ioctlStruct(r, a.fd, IOMMU_GET_HW_INFO, bytes);
    if (outcome.r !== 'ok') return plain(outcome);
    const out = decoded(iommu_hw_info_7_2, bytes);
    return plain(outcome, {
      type: String(out.out_data_type), data_len: String(out.data_len), caps: String(out.out_capabilities), pasid: String(out.out_max_pasid_log2),
      data: scratchOut(r, a.data, 64),
    });
  },
};

const setDirty: OpSpec = {
  name: 'dirty.set', family: 'iommufd', weight: 5,
  gen: (g, hwpt = g.ref('hwpt', dirtyHwpt)) => ({ fd: g.ctxOf(hwpt), hwpt, flags: g.rng.weighted<number>([[1, 65], [0, 30], [2, 5]]), size: g.sizeMode() }),
  run(r, s) {
    const a = s.a as A;
    return plain(ioctlStruct(r, a.fd, IOMMU_HWPT_SET_DIRTY_TRACKING, sized(iommu_hwpt_set_dirty_tracking, { hwpt_id: r.id(a.hwpt), flags: a.flags }, a.size)).outcome);
  },
};

/** Bytes of bitmap a dirty read may write: 16 KiB of scratch, and the reads stay within 4 MiB / 2 KiB bits. */
const BITMAP_BYTES = 0x2000;

const getDirty: OpSpec = {
  name: 'dirty.get', family: 'iommufd', weight: 8,
  gen(g) {
    const pageSize = g.rng.weighted<bigint>([[PAGE, 50], [2048n, 35], [2n * PAGE, 8], [0n, 3], [3n, 4]]);
    const range = g.mapped();
    const length = range.length > 0x40_0000n && g.clean ? 0x40_0000n : range.length;
    const hwpt = g.ref('hwpt', dirtyHwpt);
    return {
      fd: g.ctxOf(hwpt), hwpt, flags: g.flags([IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR], 1 << 4), iova: range.iova, length, pageSize,
      data: scratchPtr(g, SCRATCH.bitmap + BigInt(g.rng.pick([0, 0, 0, 8, 3]))), keep: g.rng.chance(0.1), reserved: g.bad(0.03) ? 1 : 0,
      size: g.sizeMode(),
    };
  },
  run(r, s) {
    const a = s.a as A;
    if (!('raw' in a.data) && !a.keep) r.bytes('scratch', Number(SCRATCH.bitmap), BITMAP_BYTES).fill(0);
    const bytes = sized(iommu_hwpt_get_dirty_bitmap, {
      hwpt_id: r.id(a.hwpt), flags: a.flags, iova: a.iova, length: a.length, page_size: a.pageSize, data: r.ptr(a.data), __reserved: a.reserved,
    }, a.size);
    const { outcome } = ioctlStruct(r, a.fd, IOMMU_HWPT_GET_DIRTY_BITMAP, bytes);
    // The bitmap as the user's buffer holds it (bits past the range stay as they were).
    const bits = a.pageSize > 0n ? Math.min(Number((a.length > 0x40_0000n ? 0x40_0000n : a.length) / (a.pageSize || 1n)), BITMAP_BYTES * 8 - 64) : 0;
    return plain(outcome, outcome.r === 'ok' ? { bitmap: scratchOut(r, a.data, Math.ceil(bits / 8)) } : undefined);
  },
};

export const HWPT_OPS: readonly OpSpec[] = [hwptAlloc, hwInfo, setDirty, getDirty];
