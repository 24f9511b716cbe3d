// The four places where SimHost departed from Linux that the differential fuzzer found (issue 16):
// HWPT_ALLOC's data_type check, the cap on automatic IOVA alignment, IOAS_COPY pinning only the
// slice copied, and mmap covering whole pages. On SimHost and, in the kernel tier, on the real kernel.

import { afterEach, describe, expect, it } from 'vitest';
import { type HostKernel, type HostMapping } from '@vmmkit/core';
import {
  IOMMU_HWPT_DATA_SELFTEST, IOMMU_HWPT_ALLOC, IOMMU_HWPT_DATA_VTD_S1, IOMMU_IOAS_COPY, IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_TEST_OP_MD_CHECK_MAP, iommu_hwpt_alloc, iommu_ioas_copy, MOCK_APERTURE_START,
} from '@vmmkit/core/uapi';
import { anon, call, fails, Iommufd, mockDomain, PAGE, RW, testCmd } from './iommufd-helpers.js';
import { iommufdTargets, isSim, onTarget, selftestTargets, type HostTarget } from './host-targets.js';

const MB = 1n << 20n;

/** What a case opened, released after it (on the real kernel nothing else would). */
class Scope {
  readonly #io: Iommufd<HostKernel>[] = [];
  readonly #maps: HostMapping[] = [];

  iommufd(target: HostTarget): Iommufd<HostKernel> {
    const io = new Iommufd(target.host());
    this.#io.push(io);
    return io;
  }

  mmap(host: HostKernel, length: bigint | number): HostMapping {
    const m = anon(host, length);
    this.#maps.push(m);
    return m;
  }

  release(): void {
    for (const io of this.#io.splice(0)) io.close();
    for (const m of this.#maps.splice(0)) m.unmap();
  }
}

function describeWithIommufd(target: HostTarget): void {
  describe.skipIf(target.unavailable !== undefined)(onTarget('SimHost fidelity: /dev/iommu alone', target), () => {
    const scope = new Scope();
    afterEach(() => scope.release());

    it('IOMMU_HWPT_ALLOC refuses a data_type without data_len (EINVAL) before looking anything up', () => {
      const io = scope.iommufd(target);
      // Device 0 and object 0 never exist: the ENOENT of the lookup must not come first.
      const alloc = (dataType: number) => call(io.host, io.fd, IOMMU_HWPT_ALLOC, iommu_hwpt_alloc, { dev_id: 0, pt_id: 0, data_type: dataType, data_len: 0 });
      fails('EINVAL', () => alloc(IOMMU_HWPT_DATA_VTD_S1));
      fails('EINVAL', () => alloc(IOMMU_HWPT_DATA_SELFTEST));
      fails('ENOENT', () => alloc(0));
    });

    it('caps the automatic IOVA alignment at the huge page size (2 MiB)', () => {
      const io = scope.iommufd(target);
      const buffer = scope.mmap(io.host, 32n * MB);
      const aligned = (buffer.addr + 16n * MB - 1n) & ~(16n * MB - 1n);
      const ioas = io.ioasAlloc();
      // 3 MiB would ask for 4 MiB alignment, the 16 MiB-aligned address for 16 MiB: both are capped.
      expect(io.map(ioas, aligned, 0x30_0000n)).toBe(0x20_0000n);
      expect(io.map(ioas, aligned, 0x10_0000n)).toBe(0x10_0000n);
      // A smaller alignment in the address still wins.
      expect(io.map(ioas, aligned + 0x1000n, 0x2000n)).toBe(0x1000n);
    });
  });
}

function describeWithMock(target: HostTarget): void {
  describe.skipIf(target.unavailable !== undefined)(onTarget('SimHost fidelity: the selftest mock', target), () => {
    const scope = new Scope();
    afterEach(() => scope.release());

    it('IOMMU_HWPT_ALLOC with the mock device refuses data_type 0xdead without data (EINVAL)', () => {
      const io = scope.iommufd(target);
      const ioas = io.ioasAlloc();
      const { idev } = mockDomain(io, ioas);
      fails('EINVAL', () => call(io.host, io.fd, IOMMU_HWPT_ALLOC, iommu_hwpt_alloc, { dev_id: idev, pt_id: ioas, data_type: 0xdead, data_len: 0 }));
      expect(io.hwptAlloc(idev, ioas)).toBeGreaterThan(0);
    });

    it('IOAS_COPY pins only the slice it copies, though the source area runs past the end of its mapping', () => {
      const io = scope.iommufd(target);
      const buffer = scope.mmap(io.host, 2n * PAGE);
      buffer.bytes.fill(0x5a);
      // No domain on the source: its pages are pinned only when needed, so this is allowed.
      const src = io.ioasAlloc();
      io.map(src, buffer.addr, 64n * PAGE, MOCK_APERTURE_START);
      const dst = io.ioasAlloc();
      const mock = mockDomain(io, dst);
      const copy = (length: bigint) => call(io.host, io.fd, IOMMU_IOAS_COPY, iommu_ioas_copy, {
        flags: RW | IOMMU_IOAS_MAP_FIXED_IOVA, dst_ioas_id: dst, src_ioas_id: src, length, dst_iova: MOCK_APERTURE_START, src_iova: MOCK_APERTURE_START,
      });
      copy(2n * PAGE);
      // The mock domain maps the buffer's own pages.
      testCmd(io, IOMMU_TEST_OP_MD_CHECK_MAP, mock.hwpt, { check_map: { iova: MOCK_APERTURE_START, length: 2n * PAGE, uptr: buffer.addr } });
      if (isSim(io.host)) {
        // SimHost leaves a gap after every mapping: pinning past it is EFAULT (on Linux whatever
        // follows the mapping decides).
        io.unmap(dst, MOCK_APERTURE_START, 2n * PAGE);
        fails('EFAULT', () => copy(64n * PAGE));
      }
    });

    it('mmap maps whole pages: the rest of the last page can be mapped into an IOAS with a domain', () => {
      const io = scope.iommufd(target);
      const buffer = scope.mmap(io.host, 5000);
      const ioas = io.ioasAlloc();
      const mock = mockDomain(io, ioas);
      // Pinned at once (the IOAS has a domain): the second page exists, though only 904 bytes were asked for.
      io.map(ioas, buffer.addr, 2n * PAGE, MOCK_APERTURE_START);
      testCmd(io, IOMMU_TEST_OP_MD_CHECK_MAP, mock.hwpt, { check_map: { iova: MOCK_APERTURE_START, length: 2n * PAGE, uptr: buffer.addr } });
      expect(buffer.bytes.byteLength).toBe(5000);
      if (isSim(io.host)) fails('EFAULT', () => io.map(ioas, buffer.addr, 3n * PAGE, MOCK_APERTURE_START + 2n * PAGE));
    });
  });
}

for (const target of iommufdTargets()) describeWithIommufd(target);
for (const target of selftestTargets()) describeWithMock(target);
