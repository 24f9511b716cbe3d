// The kernel's iommufd_ioas and iommufd_mock_domain selftest fixtures (tools/testing/selftests/
// iommu/iommufd.c, Linux 6.12) ported to the host port: IOAS areas with no, one and two mock
// domains, on SimHost and, in the kernel tier, on the real kernel's mock.

import { afterEach, describe, expect, it } from 'vitest';
import { HostError, type HostKernel, type HostMapping } from '@vmmkit/core';
import {
  IOMMU_HW_INFO_SELFTEST_REGVAL, IOMMU_HW_INFO_TYPE_SELFTEST, IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_IOAS_ALLOW_IOVAS,
  IOMMU_IOAS_COPY, IOMMU_IOAS_IOVA_RANGES, IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_WRITEABLE, IOMMU_TEST_CMD,
  IOMMU_TEST_OP_ADD_RESERVED, IOMMU_TEST_OP_MD_CHECK_MAP, iommu_ioas_allow_iovas, iommu_ioas_copy,
  iommu_ioas_iova_ranges, iommu_iova_range, iommu_test_cmd, iommu_test_hw_info, MOCK_APERTURE_LAST,
  MOCK_APERTURE_START, MOCK_IO_PAGE_SIZE, O_RDWR,
} from '@vmmkit/core/uapi';
import {
  anon, call, fails, Iommufd, machine, mockDomain, mockReplace, PAGE, testCmd,
} from './iommufd-helpers.js';
import { isSim, onTarget, selftestTargets, type HostTarget } from './host-targets.js';

const BUFFER_SIZE = 16n * PAGE;
const HUGE_PAGE = 2n << 20n;
const U64_MAX = (1n << 64n) - 1n;

/**
 * Eight read-write pages followed by eight unmapped ones. The selftest munmaps the second half of
 * a mapping; the port unmaps whole mappings only. Linux allocates top-down, so an 8-page mapping
 * made right after a 16-page one usually lands just below it: unmapping the 16 pages then leaves
 * the hole (if the placement missed, both stay mapped as fillers and it tries again). SimHost
 * leaves a gap after every mapping anyway.
 */
function halfMapped(host: HostKernel): HostMapping {
  if (isSim(host)) return anon(host, 8n * PAGE);
  const fillers: HostMapping[] = [];
  try {
    for (let tries = 0; tries < 64; tries++) {
      const above = anon(host, 16n * PAGE);
      const half = anon(host, 8n * PAGE);
      if (half.addr + 8n * PAGE === above.addr) {
        above.unmap();
        return half;
      }
      fillers.push(above, half);
    }
    throw new Error('no 8-page mapping landed below a 16-page one in 64 tries');
  } finally {
    for (const m of fillers) m.unmap();
  }
}

/** The iommufds the fixtures opened: closed after each test, as the selftests' teardown does. */
const opened: Iommufd<HostKernel>[] = [];
afterEach(() => {
  for (const io of opened.splice(0)) {
    try {
      io.close();
    } catch (e) {
      if (!(e instanceof HostError && e.errno === 'EBADF')) throw e; // the test closed it itself
    }
  }
});

/** FIXTURE(iommufd_ioas) on `target` with `mockDomains` mock devices attached to its IOAS. */
function ioasFixture(target: HostTarget, mockDomains: number) {
  const io = new Iommufd(target.host());
  opened.push(io);
  const ioas = io.ioasAlloc();
  // Aligned to a huge page, as the selftest's posix_memalign makes it: kernel-chosen IOVAs keep the
  // alignment of the user address, so the alignment checks below need one.
  const buffer = (anon(io.host, HUGE_PAGE + BUFFER_SIZE).addr + HUGE_PAGE - 1n) & ~(HUGE_PAGE - 1n);
  let [stdev, hwpt, idev, baseIova] = [0, 0, 0, 0n];
  const hwpts: number[] = [];
  for (let i = 0; i < mockDomains; i++) {
    ({ stdev, hwpt, idev } = mockDomain(io, ioas));
    hwpts.push(hwpt);
    baseIova = MOCK_APERTURE_START;
  }
  const addReserved = (start: bigint, length: bigint) => testCmd(io, IOMMU_TEST_OP_ADD_RESERVED, ioas, { add_reserved: { start, length } });
  const allowIovas = (ranges: { start: bigint; last: bigint }[]) => {
    const buf = anon(io.host, PAGE);
    ranges.forEach((r, i) => buf.bytes.set(iommu_iova_range.encode(r), i * iommu_iova_range.size));
    call(io.host, io.fd, IOMMU_IOAS_ALLOW_IOVAS, iommu_ioas_allow_iovas, { ioas_id: ioas, num_iovas: ranges.length, allowed_iovas: buf.addr });
  };
  return { io, host: io.host, ioas, buffer, stdev, hwpt, hwpts, idev, baseIova, addReserved, allowIovas };
}

const IOAS_VARIANTS = [
  { name: 'no_domain', mockDomains: 0 },
  { name: 'mock_domain', mockDomains: 1 },
  { name: 'two_mock_domain', mockDomains: 2 },
];

/** The iommufd_ioas and iommufd_mock_domain cases on one host. */
function describeMockDomains(target: HostTarget): void {
  describe.skipIf(target.unavailable !== undefined)(onTarget('iommufd selftest mock', target), () => {
    describe.each(IOAS_VARIANTS)('$name', ({ mockDomains }) => {
      it('ioas_destroy: an IOAS that a device HWPT uses is busy', () => {
        const self = ioasFixture(target, mockDomains);
        if (self.stdev) fails('EBUSY', () => self.io.destroy(self.ioas));
        else self.io.destroy(self.ioas);
      });

      it('hwpt_attach: a mock device attaches directly to a HWPT', () => {
        const self = ioasFixture(target, mockDomains);
        if (self.stdev) mockDomain(self.io, self.hwpt);
        else fails('ENOENT', () => mockDomain(self.io, self.hwpt));
      });

      it('ioas_area_destroy and ioas_area_auto_destroy', () => {
        const self = ioasFixture(target, mockDomains);
        for (let i = 0n; i < 10n; i++) self.io.map(self.ioas, self.buffer, PAGE, self.baseIova + i * PAGE);
        if (self.stdev) fails('EBUSY', () => self.io.destroy(self.ioas));
        else self.io.destroy(self.ioas);
        self.io.close();
        if (isSim(self.host)) expect(self.host.census().objects.ioas).toBeUndefined();
      });

      it('get_hw_info: the selftest type and register, for any buffer length', () => {
        const self = ioasFixture(target, mockDomains);
        if (!self.idev) {
          fails('ENOENT', () => self.io.hwInfo(self.idev, anon(self.host, 8).addr, 8));
          return;
        }
        const buf = anon(self.host, PAGE);
        for (const len of [0, iommu_test_hw_info.size, iommu_test_hw_info.size + 8, 4]) {
          buf.bytes.fill(0xaa);
          const out = self.io.hwInfo(self.idev, len ? buf.addr : 0n, len);
          expect(out.out_data_type).toBe(IOMMU_HW_INFO_TYPE_SELFTEST);
          expect(out.data_len).toBe(iommu_test_hw_info.size);
          if (len >= 4) expect(buf.bytes.subarray(0, 4)).toEqual(new Uint8Array(4)); // flags
          if (len >= 8) expect(iommu_test_hw_info.decode(buf.bytes).test_reg).toBe(IOMMU_HW_INFO_SELFTEST_REGVAL);
          // Trailing bytes of a larger buffer are zeroed; nothing beyond the buffer is touched.
          expect(buf.bytes.subarray(8, len).every((b) => b === 0)).toBe(true);
          expect(buf.bytes[len]).toBe(0xaa);
        }
      });

      it('area: unmap needs whole areas, overlapping maps fail, unmap all always works', () => {
        const { io, ioas, buffer, baseIova } = ioasFixture(target, mockDomains);
        for (let i = 0n; i < 10n; i++) fails('ENOENT', () => io.unmap(ioas, i * PAGE, PAGE));
        for (let i = 0n; i < 10n; i++) io.map(ioas, buffer, PAGE, baseIova + i * PAGE);
        for (let i = 0n; i < 10n; i++) expect(io.unmap(ioas, baseIova + i * PAGE, PAGE)).toBe(PAGE);

        io.map(ioas, buffer, 2n * PAGE, baseIova + 16n * PAGE);
        fails('ENOENT', () => io.unmap(ioas, baseIova + 16n * PAGE, PAGE));
        fails('ENOENT', () => io.unmap(ioas, baseIova + 17n * PAGE, PAGE));
        for (const [pages, at] of [[2n, 16n], [1n, 16n], [1n, 17n], [2n, 15n], [3n, 15n]] as const) {
          fails('EEXIST', () => io.map(ioas, buffer, pages * PAGE, baseIova + at * PAGE));
        }
        expect(io.unmap(ioas, 0n, U64_MAX)).toBe(2n * PAGE);
        expect(io.unmap(ioas, 0n, U64_MAX)).toBe(0n);
      });

      it('unmap_fully_contained_areas', () => {
        const { io, ioas, buffer, baseIova } = ioasFixture(target, mockDomains);
        const base = baseIova + 4n * PAGE; // room below the first area for the no-domain variant
        for (let i = 0n; i < 4n; i++) io.map(ioas, buffer, 8n * PAGE, base + i * 16n * PAGE);
        fails('ENOENT', () => io.unmap(ioas, base - 4n * PAGE, 8n * PAGE));
        fails('ENOENT', () => io.unmap(ioas, base + 3n * 16n * PAGE + 8n * PAGE - 4n * PAGE, 8n * PAGE));
        expect(io.unmap(ioas, base - 4n * PAGE, 3n * 16n * PAGE + 8n * PAGE + 4n * PAGE)).toBe(32n * PAGE);
      });

      it('area_auto_iova: aligned kernel IOVAs that avoid reserved ranges and stay in allowed ones', () => {
        const self = ioasFixture(target, mockDomains);
        const { io, ioas, buffer } = self;
        const alignOf = (length: bigint): bigint => length & -length;
        const mapAll = (check: (iova: bigint, length: bigint) => void, va = buffer): void => {
          const iovas = Array.from({ length: 10 }, (_, i) => io.map(ioas, va, PAGE * BigInt(i + 1)));
          iovas.forEach((iova, i) => {
            const length = PAGE * BigInt(i + 1);
            expect(iova % alignOf(length)).toBe(0n);
            check(iova, length);
          });
          iovas.forEach((iova, i) => io.unmap(ioas, iova, PAGE * BigInt(i + 1)));
        };
        mapAll(() => {}, self.stdev ? buffer : 1n << 31n); // with no domain nothing is pinned yet
        const reserved = { start: PAGE * 4n, length: PAGE * 100n };
        self.addReserved(reserved.start, reserved.length);
        mapAll((iova) => expect(iova > reserved.start && iova < reserved.start + reserved.length).toBe(false));
        fails('EADDRINUSE', () => self.allowIovas([{ start: PAGE, last: PAGE * 600n }]));
        const allowed = self.stdev
          ? { start: MOCK_APERTURE_START + PAGE, last: MOCK_APERTURE_START + PAGE * 600n - 1n }
          : { start: PAGE * 200n, last: PAGE * 600n - 1n };
        self.allowIovas([allowed]);
        mapAll((iova, length) => {
          expect(iova >= allowed.start && iova + length <= allowed.last + 1n).toBe(true);
        });
      });

      it('area_allowed: reserved and allowed ranges may not intersect, either way round', () => {
        const self = ioasFixture(target, mockDomains);
        const range = { start: self.baseIova, last: self.baseIova + PAGE * 600n };
        self.allowIovas([range]);
        fails('EADDRINUSE', () => self.addReserved(range.start + PAGE, PAGE));
        self.allowIovas([]);
        self.addReserved(range.start + PAGE, PAGE);
        fails('EADDRINUSE', () => self.allowIovas([range]));
      });

      it('copy_area: within one IOAS and between two', () => {
        const { io, host, ioas, buffer, baseIova } = ioasFixture(target, mockDomains);
        io.map(ioas, buffer, PAGE, baseIova);
        const copy = (dst: number, dstIova: bigint) => call(host, io.fd, IOMMU_IOAS_COPY, iommu_ioas_copy, {
          flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE, dst_ioas_id: dst, src_ioas_id: ioas, length: PAGE, src_iova: baseIova, dst_iova: dstIova,
        });
        copy(ioas, baseIova + PAGE);
        copy(io.ioasAlloc(), 0n);
        // A copy, like a map, must grant READABLE or WRITEABLE (a stable fix of 2024 the selftest follows).
        fails('EINVAL', () => call(host, io.fd, IOMMU_IOAS_COPY, iommu_ioas_copy, {
          flags: IOMMU_IOAS_MAP_FIXED_IOVA, dst_ioas_id: ioas, src_ioas_id: ioas, length: PAGE, src_iova: baseIova, dst_iova: baseIova + 2n * PAGE,
        }));
      });

      it('iova_ranges: the aperture, EMSGSIZE with the needed count, reserved holes', () => {
        const self = ioasFixture(target, mockDomains);
        const buf = anon(self.host, BUFFER_SIZE);
        const ranges = (num: number) => {
          buf.bytes.fill(0);
          const args = iommu_ioas_iova_ranges.encode({ ioas_id: self.ioas, num_iovas: num, allowed_iovas: buf.addr });
          let errno: string | undefined;
          try {
            self.host.ioctl(self.io.fd, IOMMU_IOAS_IOVA_RANGES, args);
          } catch (e) {
            errno = (e as { errno: string }).errno;
          }
          const out = iommu_ioas_iova_ranges.decode(args);
          const r = (i: number) => iommu_iova_range.decode(buf.bytes, i * iommu_iova_range.size);
          return { errno, n: out.num_iovas, align: out.out_iova_alignment, r };
        };
        const max = Number(BUFFER_SIZE) / iommu_iova_range.size;
        let out = ranges(max);
        expect(out.n).toBe(1);
        expect(out.r(0)).toEqual(self.stdev ? { start: MOCK_APERTURE_START, last: MOCK_APERTURE_LAST } : { start: 0n, last: U64_MAX });
        expect(out.align).toBe(self.stdev ? MOCK_IO_PAGE_SIZE : 1n);
        out = ranges(0);
        expect([out.errno, out.n, out.r(0)]).toEqual(['EMSGSIZE', 1, { start: 0n, last: 0n }]);

        self.addReserved(PAGE, PAGE);
        out = ranges(max);
        if (!self.stdev) {
          expect(out.n).toBe(2);
          expect([out.r(0), out.r(1)]).toEqual([{ start: 0n, last: PAGE - 1n }, { start: 2n * PAGE, last: U64_MAX }]);
        } else {
          expect([out.n, out.r(0)]).toEqual([1, { start: MOCK_APERTURE_START, last: MOCK_APERTURE_LAST }]);
        }
        out = ranges(1);
        expect(out.errno).toBe(self.stdev ? undefined : 'EMSGSIZE');
        expect(out.n).toBe(self.stdev ? 1 : 2);
        expect(out.r(0)).toEqual(self.stdev ? { start: MOCK_APERTURE_START, last: MOCK_APERTURE_LAST } : { start: 0n, last: PAGE - 1n });
        expect(out.r(1)).toEqual({ start: 0n, last: 0n });
      });
    });

    describe('iommufd_mock_domain', () => {
      /** FIXTURE(iommufd_mock_domain): an IOAS with `n` mock domains. */
      function fixture(n = 1) {
        const self = ioasFixture(target, n);
        const checkMap = (iova: bigint, length: bigint, uptr: bigint): void => {
          for (const hwpt of self.hwpts) testCmd(self.io, IOMMU_TEST_OP_MD_CHECK_MAP, hwpt, { check_map: { iova, length, uptr } });
        };
        return { ...self, checkMap };
      }

      it('basic: one page maps, EFAULT half way through a mapping and on its first page', () => {
        const { io, host, ioas, buffer, checkMap } = fixture();
        const iova = io.map(ioas, buffer, PAGE);
        checkMap(iova, PAGE, buffer);
        fails('EINVAL', () => checkMap(iova, PAGE, buffer + PAGE)); // maps another page
        const half = halfMapped(host);
        fails('EFAULT', () => io.map(ioas, half.addr, 16n * PAGE)); // the second half is not mapped
        half.unmap();
        fails('EFAULT', () => io.map(ioas, half.addr, 16n * PAGE)); // nor the first
        expect(io.unmap(ioas, 0n, U64_MAX)).toBe(PAGE); // the failed maps left nothing behind
      });

      it('all_aligns: every start and length at the mock IO page granularity maps and checks', () => {
        const { io, host, ioas, checkMap } = fixture(2);
        const bufSize = 8n * PAGE;
        const buf = anon(host, bufSize);
        for (let start = 0n; start < bufSize; start += MOCK_IO_PAGE_SIZE) {
          for (let end = start + MOCK_IO_PAGE_SIZE; end < bufSize; end += MOCK_IO_PAGE_SIZE) {
            const iova = io.map(ioas, buf.addr + start, end - start);
            expect(iova % MOCK_IO_PAGE_SIZE).toBe((buf.addr + start) % MOCK_IO_PAGE_SIZE);
            checkMap(iova, end - start, buf.addr + start);
            io.unmap(ioas, iova, end - start);
          }
        }
      });

      it('replace: the auto HWPT goes when its last device leaves it', () => {
        const self = fixture(1);
        const { io } = self;
        const ioas2 = io.ioasAlloc();
        expect(mockReplace(io, self.stdev, ioas2)).not.toBe(self.hwpt);
        fails('ENOENT', () => mockReplace(io, self.stdev, self.hwpt));
        mockReplace(io, self.stdev, ioas2);
        mockReplace(io, self.stdev, self.ioas);
        io.destroy(ioas2);
      });

      it('replace between the HWPTs of two mock domains', () => {
        const self = fixture(2);
        const { io } = self;
        const first = mockDomain(io, self.ioas); // a third device, to rotate
        expect(mockReplace(io, first.stdev, self.hwpts[1]!)).toBe(self.hwpts[1]);
        expect(mockReplace(io, first.stdev, self.hwpts[1]!)).toBe(self.hwpts[1]);
        expect(mockReplace(io, first.stdev, self.hwpts[0]!)).toBe(self.hwpts[0]);
        mockReplace(io, first.stdev, self.ioas);
      });

      it('alloc_hwpt: unknown flags, NEST_PARENT, and the HWPT rotation', () => {
        const self = fixture(1);
        const { io, idev, stdev, ioas } = self;
        fails('EOPNOTSUPP', () => io.hwptAlloc(idev, ioas, ~IOMMU_HWPT_ALLOC_NEST_PARENT));
        const a = io.hwptAlloc(idev, ioas, 0);
        const b = io.hwptAlloc(idev, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT);
        mockReplace(io, stdev, a);
        fails('EBUSY', () => io.destroy(a));
        mockReplace(io, stdev, b);
        fails('EBUSY', () => io.destroy(b));
        mockReplace(io, stdev, ioas);
        io.destroy(b);
        const other = mockDomain(io, a);
        io.destroy(other.stdev);
        io.destroy(a);
      });

      it('destroying the mock device (its stdev id) unbinds it; its idev cannot be destroyed by the user', () => {
        const self = fixture(1);
        const { io, host } = self;
        fails('EBUSY', () => io.destroy(self.idev));
        if (isSim(host)) expect(host.census().objects.selftest).toBe(1);
        io.destroy(self.stdev);
        if (isSim(host)) expect(host.census().objects.selftest).toBeUndefined();
        if (isSim(host)) expect(host.census().objects.hwpt).toBeUndefined();
        // The mock device took its auto HWPT with it: the IOAS is free to go.
        io.destroy(self.ioas);
      });

      it('ADD_RESERVED checks its range before its IOAS: EINVAL for length 0, EOVERFLOW past 2^64, then ENOENT', () => {
        const { io, ioas } = fixture(0);
        const reserve = (id: number, start: bigint, length: bigint) => testCmd(io, IOMMU_TEST_OP_ADD_RESERVED, id, { add_reserved: { start, length } });
        fails('EINVAL', () => reserve(999, PAGE, 0n));
        fails('EOVERFLOW', () => reserve(999, U64_MAX, 2n));
        fails('ENOENT', () => reserve(999, PAGE, PAGE));
        reserve(ioas, U64_MAX, 1n); // the last byte of the IOVA space
      });

      it('ADD_RESERVED over a mapping is EADDRINUSE; an unknown op is EOPNOTSUPP', () => {
        const self = fixture(1);
        self.io.map(self.ioas, self.buffer, PAGE, MOCK_APERTURE_START);
        fails('EADDRINUSE', () => self.addReserved(MOCK_APERTURE_START, PAGE));
        fails('EOPNOTSUPP', () => testCmd(self.io, 99, 0));
      });
    });
  });
}

for (const target of selftestTargets()) describeMockDomains(target);

describe('IOMMU_TEST_CMD availability', () => {
  it('exists only on CONFIG_IOMMUFD_TEST kernels', () => {
    const host = machine({ features: { selftest: false } });
    const fd = host.open('/dev/iommu', O_RDWR);
    fails('ENOTTY', () => host.ioctl(fd, IOMMU_TEST_CMD, iommu_test_cmd.encode({ op: IOMMU_TEST_OP_ADD_RESERVED })));
    host.close(fd);
  });
});
