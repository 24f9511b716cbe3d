// The kernel's iommufd_dirty_tracking selftest fixture (tools/testing/selftests/iommu/iommufd.c,
// Linux 6.12) ported to the host port: mock domains, IOMMU_TEST_OP_DIRTY and
// IOMMU_HWPT_GET_DIRTY_BITMAP, on SimHost and, in the kernel tier, on the real kernel's mock.

import { afterEach, beforeEach, describe, expect, it, test } from 'vitest';
import { HostError, type HostKernel, type HostMapping } from '@vmmkit/core';
import {
  IOMMU_HW_CAP_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, IOMMU_OPTION,
  IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, iommu_option, MOCK_APERTURE_START, MOCK_FLAGS_DEVICE_HUGE_IOVA,
  MOCK_FLAGS_DEVICE_NO_DIRTY, MOCK_HUGE_PAGE_SIZE, MOCK_IO_PAGE_SIZE,
} from '@vmmkit/core/uapi';
import { call, anon, fails, Iommufd, mockDomain, mockSetDirty, PAGE } from './iommufd-helpers.js';
import { isSim, onTarget, selftestTargets, seriesOf, sim72Target, withSim72, type HostTarget } from './host-targets.js';

const MB = 1n << 20n;
const KB = 1n << 10n;
/** Bits 0, 2, 4 and 6: the first mock page of every 4 KiB page. */
const EVERY_OTHER = 0x55;

interface Variant {
  readonly name: string;
  readonly bufferSize: bigint;
  readonly hugepages?: boolean;
}

const VARIANTS: readonly Variant[] = [
  { name: 'domain_dirty8k', bufferSize: 8n * KB }, // half of a u8 bitmap
  { name: 'domain_dirty16k', bufferSize: 16n * KB }, // one u8
  { name: 'domain_dirty128k', bufferSize: 128n * KB }, // one u32
  { name: 'domain_dirty256k', bufferSize: 256n * KB }, // one u64
  { name: 'domain_dirty640k', bufferSize: 640n * KB }, // two u64 and a trailing end
  { name: 'domain_dirty128M', bufferSize: 128n * MB }, // a 4K bitmap
  { name: 'domain_dirty128M_huge', bufferSize: 128n * MB, hugepages: true },
  { name: 'domain_dirty256M', bufferSize: 256n * MB }, // an 8K bitmap
  { name: 'domain_dirty256M_huge', bufferSize: 256n * MB, hugepages: true },
];

/**
 * Why `host`'s mock cannot make huge IOPTEs as this port does (MOCK_FLAGS_DEVICE_HUGE_IOVA, Linux
 * 6.12), or undefined when it can. Linux 7.2's mock (built on the generic page table) has no such flag: huge
 * mock page tables come from IOMMU_HWPT_DATA_SELFTEST's pagetable_type there.
 */
function hugeIovaUnavailable(host: HostKernel): string | undefined {
  const io = new Iommufd(host);
  try {
    mockDomain(io, io.ioasAlloc(), MOCK_FLAGS_DEVICE_HUGE_IOVA);
    return undefined;
  } catch (e) {
    if (e instanceof HostError && e.errno === 'EINVAL') return 'cannot run on this kernel: its mock has no MOCK_FLAGS_DEVICE_HUGE_IOVA';
    throw e;
  } finally {
    io.close();
  }
}

/** The fixture: an iommufd, a 1 MiB-aligned buffer (posix_memalign to a huge page), a bitmap, a mock domain. */
class Fixture {
  // The selftest's huge variants back the buffer with huge pages: physically contiguous memory.
  readonly io: Iommufd<HostKernel>;
  readonly host: HostKernel;
  readonly #bufferMap: HostMapping;
  readonly buffer: bigint;
  readonly bitmap: HostMapping;
  /** Bits in the bitmap: one per MOCK_IO_PAGE_SIZE of the buffer. */
  readonly nbits: bigint;
  readonly ioas: number;
  readonly idev: number;
  readonly stdev: number;

  constructor(target: HostTarget, readonly variant: Variant) {
    this.io = new Iommufd(target.host({ transparentHugePages: variant.hugepages === true }));
    this.host = this.io.host;
    this.#bufferMap = anon(this.host, variant.bufferSize + MB);
    this.buffer = (this.#bufferMap.addr + MB - 1n) & ~(MB - 1n);
    this.nbits = variant.bufferSize / MOCK_IO_PAGE_SIZE;
    // Room for an extra page for the unaligned cases.
    this.bitmap = anon(this.host, (this.nbits + 7n) / 8n + PAGE);
    this.ioas = this.pageSizedIoas();
    const mock = mockDomain(this.io, this.ioas, variant.hugepages ? MOCK_FLAGS_DEVICE_HUGE_IOVA : undefined);
    [this.idev, this.stdev] = [mock.idev, mock.stdev];
  }

  /**
   * A new IOAS whose IOPTEs are the size the dirty checks expect. Except in the huge variants,
   * huge pages are off, as Linux 7.2's selftest sets them: its mock maps any power-of-two size,
   * so physically contiguous pages would otherwise make IOPTEs larger than one mock page.
   */
  pageSizedIoas(): number {
    const ioas = this.io.ioasAlloc();
    if (!this.variant.hugepages) {
      call(this.host, this.io.fd, IOMMU_OPTION, iommu_option, { option_id: IOMMU_OPTION_HUGE_PAGES, op: IOMMU_OPTION_OP_SET, object_id: ioas, val64: 0n });
    }
    return ioas;
  }

  /** Close the iommufd and free the memory (on the real kernel, nothing else would). */
  dispose(): void {
    this.io.close();
    this.#bufferMap.unmap();
    this.bitmap.unmap();
  }

  /** A second IOAS with the whole buffer mapped at MOCK_APERTURE_START, and a dirty HWPT on it with tracking on. */
  trackedHwpt(): { hwpt: number; ioas: number } {
    const ioas = this.pageSizedIoas();
    this.io.map(ioas, this.buffer, this.variant.bufferSize, MOCK_APERTURE_START);
    const hwpt = this.io.hwptAlloc(this.idev, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
    this.io.setDirty(hwpt, true);
    return { hwpt, ioas };
  }

  /**
   * _test_mock_dirty_bitmaps: mark the first IO page of every other IOPTE dirty through the mock
   * domain, then read the bitmap twice at byte offset `at`: the first read shows whole IOPTEs,
   * the second shows them again only with NO_CLEAR.
   */
  checkBitmaps(hwpt: number, pteSize: bigint, at: bigint, flags: number): void {
    const npte = pteSize / MOCK_IO_PAGE_SIZE;
    const pteset = 2n * npte;
    const nbits = this.nbits;
    const bytes = this.bitmap.bytes.subarray(Number(at));
    const bit = (i: bigint): boolean => (bytes[Number(i >> 3n)]! & (1 << Number(i & 7n))) !== 0;
    this.bitmap.bytes.fill(0);
    for (let i = 0n; i < nbits; i += pteset) bytes[Number(i >> 3n)]! |= 1 << Number(i & 7n);
    const expected = nbits / pteset || 1n;
    expect(mockSetDirty(this.io, hwpt, this.variant.bufferSize, MOCK_APERTURE_START, MOCK_IO_PAGE_SIZE, this.bitmap.addr + at)).toBe(expected);

    const read = (): bigint[] => {
      this.bitmap.bytes.fill(0);
      this.io.getDirty(hwpt, MOCK_APERTURE_START, this.variant.bufferSize, MOCK_IO_PAGE_SIZE, this.bitmap.addr + at, flags);
      const set: bigint[] = [];
      for (let i = 0n; i < nbits; i++) if (bit(i)) set.push(i);
      // Nothing beyond the bitmap's last bit, nor before `data`, was written.
      expect(this.bitmap.bytes.subarray(0, Number(at)).every((b) => b === 0)).toBe(true);
      expect(bytes.subarray(Number((nbits + 7n) / 8n)).every((b) => b === 0)).toBe(true);
      return set;
    };
    const want: bigint[] = [];
    for (let i = 0n; i < nbits; i++) if (i % pteset < npte) want.push(i);
    expect(read()).toEqual(want);
    expect(read()).toEqual(flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR ? want : []);
  }
}

/** The variants `target` can run: on a kernel whose mock lacks MOCK_FLAGS_DEVICE_HUGE_IOVA, the huge ones say why not. */
function variantsOn(target: HostTarget): (Variant & { unavailable?: string })[] {
  const huge = target.unavailable ? undefined : hugeIovaUnavailable(target.host());
  // SimHost's second series walks the small buffers only: the large ones cost minutes in the tier's guest.
  const large = target === sim72Target ? 'SimHost 7.2 runs the buffers up to 640 KiB' : undefined;
  return VARIANTS.map((v) => ({ ...v, unavailable: target.unavailable ?? (v.hugepages ? huge : undefined) ?? (v.bufferSize > MB ? large : undefined) }));
}

/** The fixture's tests and more, on one host. */
function describeDirtyTracking(target: HostTarget): void {
  describe.skipIf(target.unavailable !== undefined)(onTarget('iommufd_dirty_tracking', target), () => {
    describe.each(variantsOn(target))('$name', (variant) => {
      let self: Fixture;
      beforeEach(() => {
        if (variant.unavailable) return;
        self = new Fixture(target, variant);
      });
      afterEach(() => {
        if (variant.unavailable) return;
        self.dispose();
        if (!isSim(self.host)) return;
        // Closing the iommufd releases everything: no IOMMU object outlives it.
        const objects = self.host.census().objects;
        for (const kind of ['ioas', 'hwpt', 'selftest', 'device_bind', 'iommu_dirty_tracking'] as const) expect(objects[kind] ?? 0).toBe(0);
      });
      const it = test.skipIf(variant.unavailable !== undefined);
      const named = (name: string): string => (variant.unavailable ? `${name} (${variant.unavailable})` : name);

      it(named('enforce_dirty'), () => {
        const { io } = self;
        // A dirty-tracking HWPT takes a dirty-capable device and refuses one that cannot track.
        const hwpt = io.hwptAlloc(self.idev, self.ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
        const ok = mockDomain(io, hwpt);
        fails('EINVAL', () => mockDomain(io, hwpt, MOCK_FLAGS_DEVICE_NO_DIRTY));
        io.destroy(ok.stdev);
        io.destroy(hwpt);

        // A device whose IOMMU does not support dirty tracking cannot allocate such a HWPT.
        const ioas = io.ioasAlloc();
        const noDirty = mockDomain(io, ioas, MOCK_FLAGS_DEVICE_NO_DIRTY);
        fails('EOPNOTSUPP', () => io.hwptAlloc(noDirty.idev, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING));
        io.destroy(noDirty.stdev);
      });

      it(named('set_dirty_tracking'), () => {
        const { io } = self;
        const hwpt = io.hwptAlloc(self.idev, self.ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
        const mock = mockDomain(io, hwpt);
        io.setDirty(hwpt, true);
        if (isSim(self.host)) expect(self.host.census().objects.iommu_dirty_tracking).toBe(1);
        io.setDirty(hwpt, true); // idempotent
        io.setDirty(hwpt, false);
        io.setDirty(hwpt, false);
        if (isSim(self.host)) expect(self.host.census().objects.iommu_dirty_tracking ?? 0).toBe(0);
        io.destroy(mock.stdev);
        io.destroy(hwpt);
      });

      it(named('device_dirty_capability'), () => {
        const { io } = self;
        const hwpt = io.hwptAlloc(self.idev, self.ioas, 0);
        const mock = mockDomain(io, hwpt);
        const caps = (idev: number): bigint => io.hwInfo(idev).out_capabilities & BigInt(IOMMU_HW_CAP_DIRTY_TRACKING);
        expect(caps(self.idev)).toBe(BigInt(IOMMU_HW_CAP_DIRTY_TRACKING));
        expect(caps(mock.idev)).toBe(BigInt(IOMMU_HW_CAP_DIRTY_TRACKING));
        const noDirty = mockDomain(io, self.ioas, MOCK_FLAGS_DEVICE_NO_DIRTY);
        expect(caps(noDirty.idev)).toBe(0n);
        io.destroy(noDirty.stdev);
        io.destroy(mock.stdev);
        io.destroy(hwpt);
      });

      for (const [name, flags] of [['get_dirty_bitmap', 0], ['get_dirty_bitmap_no_clear', IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR]] as const) {
        it(named(name), () => {
          const pteSize = variant.hugepages ? MOCK_HUGE_PAGE_SIZE : MOCK_IO_PAGE_SIZE;
          const { hwpt } = self.trackedHwpt();
          self.checkBitmaps(hwpt, pteSize, 0n, flags);
          self.checkBitmaps(hwpt, pteSize, MOCK_IO_PAGE_SIZE, flags); // PAGE_SIZE unaligned bitmap
          self.checkBitmaps(hwpt, pteSize, 0xff1n, flags); // u64 unaligned bitmap
          self.io.destroy(hwpt);
        });
      }
    });

    describe('beyond the fixture', () => {
      it('IOMMU_TEST_OP_DIRTY needs a mock paging HWPT with tracking on, and marks only mapped pages', () => {
        const self = new Fixture(target, { name: 'x', bufferSize: 64n * KB });
        const { io } = self;
        const hwpt = io.hwptAlloc(self.idev, self.ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
        const bits = anon(self.host, PAGE);
        bits.bytes.fill(EVERY_OTHER, 0, 8);
        fails('EINVAL', () => mockSetDirty(io, hwpt, 64n * MOCK_IO_PAGE_SIZE, MOCK_APERTURE_START, MOCK_IO_PAGE_SIZE, bits.addr));
        io.setDirty(hwpt, true);
        fails('ENOENT', () => mockSetDirty(io, 999, 64n * MOCK_IO_PAGE_SIZE, MOCK_APERTURE_START, MOCK_IO_PAGE_SIZE, bits.addr));
        fails('EINVAL', () => mockSetDirty(io, hwpt, 64n * MOCK_IO_PAGE_SIZE, MOCK_APERTURE_START + 1n, MOCK_IO_PAGE_SIZE, bits.addr));
        fails('EFAULT', () => mockSetDirty(io, hwpt, 64n * MOCK_IO_PAGE_SIZE, MOCK_APERTURE_START, MOCK_IO_PAGE_SIZE, 0x1000n));
        // out_nr_dirty counts the IOPTEs marked on Linux 6.12 and the bits given on 7.2's
        // generic-page-table mock (32 here).
        const series = seriesOf(self.host);
        const counts = (mapped: bigint): bigint[] => [series === '6.12' ? mapped : 32n];
        const read = (): number[] => {
          const out = anon(self.host, PAGE);
          io.getDirty(hwpt, MOCK_APERTURE_START, 64n * MOCK_IO_PAGE_SIZE, MOCK_IO_PAGE_SIZE, out.addr, 0);
          const got = [...out.bytes.subarray(0, 8)];
          out.unmap();
          return got;
        };
        // Nothing mapped yet: no IOPTE to mark, nothing reads back dirty (6.12 stable fails the read on the hole).
        expect(counts(0n)).toContain(mockSetDirty(io, hwpt, 64n * MOCK_IO_PAGE_SIZE, MOCK_APERTURE_START, MOCK_IO_PAGE_SIZE, bits.addr));
        if (series === '6.12') fails('EINVAL', () => read());
        else expect(read()).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
        io.map(self.ioas, self.buffer, 64n * MOCK_IO_PAGE_SIZE, MOCK_APERTURE_START);
        expect(counts(32n)).toContain(mockSetDirty(io, hwpt, 64n * MOCK_IO_PAGE_SIZE, MOCK_APERTURE_START, MOCK_IO_PAGE_SIZE, bits.addr));
        expect(read()).toEqual([EVERY_OTHER, EVERY_OTHER, EVERY_OTHER, EVERY_OTHER, EVERY_OTHER, EVERY_OTHER, EVERY_OTHER, EVERY_OTHER]);
        io.unmap(self.ioas, MOCK_APERTURE_START, 64n * MOCK_IO_PAGE_SIZE);
        // Only part mapped: 6.12 marks what is mapped, then fails the read on the hole after it.
        io.map(self.ioas, self.buffer, 16n * MOCK_IO_PAGE_SIZE, MOCK_APERTURE_START);
        expect(counts(8n)).toContain(mockSetDirty(io, hwpt, 64n * MOCK_IO_PAGE_SIZE, MOCK_APERTURE_START, MOCK_IO_PAGE_SIZE, bits.addr));
        if (series === '6.12') fails('EINVAL', () => read());
        else expect(read()).toEqual([EVERY_OTHER, EVERY_OTHER, 0, 0, 0, 0, 0, 0]);
        bits.unmap();
        self.dispose();
      });

      it('unmapping drops the dirty bits of the range, re-enabling clears them: harvest first', () => {
        const self = new Fixture(target, { name: 'x', bufferSize: 64n * KB });
        const { io } = self;
        const { hwpt, ioas } = self.trackedHwpt();
        const length = 32n * MOCK_IO_PAGE_SIZE;
        const bits = anon(self.host, PAGE);
        // One mock page in every page, as the selftest marks them: Linux 7.2's mock reports a dirty
        // 4 KiB IOPTE as its first mock page only, Linux 6.12's (and SimHost's) map mock pages.
        const dirtyAll = (): bigint => {
          bits.bytes.fill(EVERY_OTHER, 0, 4);
          return mockSetDirty(io, hwpt, length, MOCK_APERTURE_START, MOCK_IO_PAGE_SIZE, bits.addr);
        };
        const read = (flags = IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR): Uint8Array => {
          bits.bytes.fill(0);
          io.getDirty(hwpt, MOCK_APERTURE_START, length, MOCK_IO_PAGE_SIZE, bits.addr, flags);
          return bits.bytes.slice(0, 4);
        };
        const all = new Uint8Array([EVERY_OTHER, EVERY_OTHER, EVERY_OTHER, EVERY_OTHER]);
        expect(dirtyAll()).toBe(16n);
        expect(read()).toEqual(all);
        // With tracking off, Linux 6.12's mock refuses to read (EINVAL, which 6.12 stable passes on);
        // 7.2's generic page table reports the bits still set in its IOPTEs.
        io.setDirty(hwpt, false);
        if (seriesOf(self.host) === '6.12') fails('EINVAL', () => read());
        else expect(read()).toEqual(all);
        // iopt_set_dirty_tracking clears the IOPTE dirty bits before every enable, even when already on.
        io.setDirty(hwpt, true);
        expect(read()).toEqual(new Uint8Array(4));
        expect(dirtyAll()).toBe(16n);
        io.setDirty(hwpt, true);
        expect(read()).toEqual(new Uint8Array(4));

        expect(dirtyAll()).toBe(16n);
        expect(io.unmap(ioas, MOCK_APERTURE_START, 64n * KB)).toBe(64n * KB);
        io.map(ioas, self.buffer, 64n * KB, MOCK_APERTURE_START);
        expect(read()).toEqual(new Uint8Array(4));
        bits.unmap();
        self.dispose();
      });
    });
  });
}

for (const target of withSim72(selftestTargets())) describeDirtyTracking(target);
