// The differential fuzzer's selftest operations (IOMMU_TEST_CMD, drivers/iommu/iommufd/selftest.c,
// CONFIG_IOMMUFD_TEST kernels): mock devices bound and attached with their flags, replacing their
// attachment, marking IOPTEs dirty, reserving IOVA and checking what a mock domain maps.

import {
  IOMMU_TEST_CMD, IOMMU_TEST_OP_ADD_RESERVED, IOMMU_TEST_OP_DIRTY, IOMMU_TEST_OP_MD_CHECK_MAP,
  IOMMU_TEST_OP_MOCK_DOMAIN, IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, iommu_test_cmd,
} from '@vmmkit/core/uapi';
import { decoded, plain, sized } from './call.js';
import { PAGE, type OpSpec } from './gen.js';
import { dirtyHwpt } from './ops-hwpt.js';
import { ioctlStruct, SCRATCH, type A } from './ops-iommufd.js';
import type { Run } from './run.js';

/** IOMMU_TEST_CMD with op `op` on object `id` and one union member. */
function testCmd(r: Run, a: A, op: number, id: number, member: Parameters<typeof iommu_test_cmd.encode>[0] = {}) {
  const bytes = sized(iommu_test_cmd, { op, id, ...member }, a.size);
  return { ...ioctlStruct(r, a.fd, IOMMU_TEST_CMD, bytes), out: () => decoded(iommu_test_cmd, bytes) };
}

const mockDomain: OpSpec = {
  name: 'mock.domain', family: 'selftest', weight: 9, makes: { stdev: 'stdev', hwpt: 'hwpt', idev: 'devid' },
  gen: (g, pt = g.ref(g.rng.chance(0.75) ? 'ioas' : 'hwpt')) => ({
    fd: g.ctxOf(pt), pt,
    // undefined: IOMMU_TEST_OP_MOCK_DOMAIN; a number: ..._FLAGS with those device flags.
    flags: g.rng.chance(0.5) ? undefined : g.rng.weighted<number>([[0, 30], [1, 40], [2, 10], [4, 15], [8, 5]]), size: g.sizeMode(),
  }),
  run(r, s) {
    const a = s.a as A;
    const flags = a.flags as number | undefined;
    const { outcome, out } = flags === undefined
      ? testCmd(r, a, IOMMU_TEST_OP_MOCK_DOMAIN, r.id(a.pt))
      : testCmd(r, a, IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, r.id(a.pt), { mock_domain_flags: { dev_flags: flags } });
    if (outcome.r !== 'ok') return plain(outcome);
    const m = out().mock_domain;
    return plain(outcome, {
      stdev: r.madeId(s.id, 'stdev', m.out_stdev_id), hwpt: r.madeId(s.id, 'hwpt', m.out_hwpt_id), idev: r.madeId(s.id, 'idev', m.out_idev_id),
    });
  },
};

const mockReplace: OpSpec = {
  name: 'mock.replace', family: 'selftest', weight: 4,
  gen(g) {
    const stdev = g.ref('stdev');
    const fd = g.ctxOf(stdev);
    return { fd, stdev, pt: g.refIn(g.rng.chance(0.6) ? 'ioas' : 'hwpt', fd), size: g.sizeMode() };
  },
  run(r, s) {
    const a = s.a as A;
    const { outcome, out } = testCmd(r, a, IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, r.id(a.stdev), { mock_domain_replace: { pt_id: r.id(a.pt) } });
    return plain(outcome, outcome.r === 'ok' ? { pt_id: r.madeId(s.id, 'pt_id', out().mock_domain_replace.pt_id) } : undefined);
  },
};

const mockDirty: OpSpec = {
  name: 'mock.dirty', family: 'selftest', weight: 6,
  gen(g) {
    const pageSize = g.rng.weighted<bigint>([[2048n, 60], [PAGE, 30], [0n, 3], [3000n, 7]]);
    const range = g.mapped();
    const hwpt = g.ref('hwpt', dirtyHwpt);
    return {
      fd: g.ctxOf(hwpt), hwpt, iova: range.iova, pages: BigInt(1 + g.rng.int(256)), pageSize,
      bits: Array.from({ length: 32 }, () => g.rng.pick([0, 0xff, 0x55, 0x01, 0x80, 0x0f])), bad: g.bad(0.04), size: g.sizeMode(),
    };
  },
  run(r, s) {
    const a = s.a as A;
    r.bytes('scratch', Number(SCRATCH.mockBits), 32).set(a.bits);
    const uptr = a.bad ? 0n : r.ptr({ buf: 'scratch', off: SCRATCH.mockBits });
    const { outcome, out } = testCmd(r, a, IOMMU_TEST_OP_DIRTY, r.id(a.hwpt), {
      dirty: { flags: 0, iova: a.iova, length: (a.pages as bigint) * (a.pageSize as bigint), page_size: a.pageSize, uptr, out_nr_dirty: 0n },
    });
    return plain(outcome, outcome.r === 'ok' ? { out_nr_dirty: String(out().dirty.out_nr_dirty) } : undefined);
  },
};

const addReserved: OpSpec = {
  name: 'mock.add_reserved', family: 'selftest', weight: 3,
  gen: (g, ioas = g.ref('ioas')) => ({ fd: g.ctxOf(ioas), ioas, start: g.iova(), length: g.length(16n), size: g.sizeMode() }),
  run(r, s) {
    const a = s.a as A;
    return plain(testCmd(r, a, IOMMU_TEST_OP_ADD_RESERVED, r.id(a.ioas), { add_reserved: { start: a.start, length: a.length } }).outcome);
  },
};

const checkMap: OpSpec = {
  name: 'mock.check_map', family: 'selftest', weight: 3,
  gen(g) {
    const { ptr, length } = g.range(16n);
    const hwpt = g.ref('hwpt');
    return { fd: g.ctxOf(hwpt), hwpt, iova: g.mapped().iova, ptr, length, size: g.sizeMode() };
  },
  run(r, s) {
    const a = s.a as A;
    return plain(testCmd(r, a, IOMMU_TEST_OP_MD_CHECK_MAP, r.id(a.hwpt), { check_map: { iova: a.iova, length: a.length, uptr: r.ptr(a.ptr) } }).outcome);
  },
};

export const SELFTEST_OPS: readonly OpSpec[] = [mockDomain, mockReplace, mockDirty, addReserved, checkMap];
