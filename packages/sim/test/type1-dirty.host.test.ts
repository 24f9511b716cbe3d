// Type1 dirty page tracking (VFIO_IOMMU_DIRTY_PAGES and UNMAP_DMA's GET_DIRTY_BITMAP in
// drivers/vfio/vfio_iommu_type1.c): every mapped page is dirty for IOMMU-backed groups, as the
// realhost probe showed (16/16), while mdevs report only the pages they wrote. The vfio-pci cases
// run on SimHost and, in the kernel tier, on the real kernel with an edu device's group.

import { afterEach, describe, expect, it } from 'vitest';
import { type HostKernel } from '@vmmkit/core';
import {
  VFIO_DMA_UNMAP_FLAG_ALL, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, VFIO_IOMMU_DIRTY_PAGES,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, VFIO_IOMMU_DIRTY_PAGES_FLAG_START, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
  VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU, vfio_iommu_type1_dirty_bitmap,
} from '@vmmkit/core/uapi';
import { anon, busMaster, fails, groupDeviceFd, Legacy, MACHINE, machine, MDEV, PAGE, setBits } from './iommufd-helpers.js';
import { isSim, onTarget, pciGroup, type HostTarget, type1Targets } from './host-targets.js';

const DEV = '0000:00:03.0';
const IOVA = 0x100000n;
const START = VFIO_IOMMU_DIRTY_PAGES_FLAG_START;
const STOP = VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP;

/** A container with `groups` attached, TYPE1v2, 16 pages mapped at IOVA, and a bitmap buffer. */
function setup(groups = [3], type = VFIO_TYPE1v2_IOMMU) {
  const host = machine();
  const legacy = new Legacy(host);
  const groupFds = groups.map((g) => legacy.group(g));
  legacy.setIommu(type);
  const buf = anon(host, 16n * PAGE);
  legacy.map(buf.addr, IOVA, 16n * PAGE);
  const bitmap = anon(host, PAGE);
  const read = (iova = IOVA, size = 16n * PAGE, at = 0n): number[] => {
    bitmap.bytes.fill(0);
    legacy.getBitmap(iova, size, { pgsize: PAGE, size: 8n, data: bitmap.addr + at });
    return setBits(bitmap.bytes.subarray(Number(at)), Number(size / PAGE));
  };
  return { host, legacy, groupFds, buf, bitmap, read };
}

const ALL16 = Array.from({ length: 16 }, (_, i) => i);

/** The vfio-pci cases on one host: a fresh SimHost per case, or the real kernel. */
function describeType1Dirty(target: HostTarget): void {
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const release of cleanup.splice(0).reverse()) release();
  });
  const groupNumber = pciGroup(target);
  /** The PCI device in that group (SimHost: 0000:00:03.0; real host: the first edu device). */
  const pciName = target.name === 'SimHost' ? DEV : (process.env.VMMKIT_TEST_EDU_DEVICES ?? '').split(',')[0]!.trim();
  /** A container with the device's group attached, TYPE1v2 (or v1), 16 pages mapped at IOVA, and a bitmap buffer. */
  const setup = (type = VFIO_TYPE1v2_IOMMU) => {
    const host: HostKernel = target.host(MACHINE);
    const legacy = new Legacy(host);
    cleanup.push(() => host.close(legacy.container));
    const groupFds = [legacy.group(groupNumber.group!)];
    cleanup.push(() => host.close(groupFds[0]!));
    legacy.setIommu(type);
    const buf = anon(host, 16n * PAGE);
    legacy.map(buf.addr, IOVA, 16n * PAGE);
    const bitmap = anon(host, PAGE);
    cleanup.push(() => {
      buf.unmap();
      bitmap.unmap();
    });
    const read = (iova = IOVA, size = 16n * PAGE, at = 0n): number[] => {
      bitmap.bytes.fill(0);
      legacy.getBitmap(iova, size, { pgsize: PAGE, size: 8n, data: bitmap.addr + at });
      return setBits(bitmap.bytes.subarray(Number(at)), Number(size / PAGE));
    };
    return { host, legacy, groupFds, buf, bitmap, read };
  };
  const unavailable = target.unavailable ?? groupNumber.unavailable;

  describe.skipIf(unavailable !== undefined)(onTarget('type1 dirty pages of a vfio-pci group', { ...target, unavailable }), () => {
    describe('VFIO_IOMMU_DIRTY_PAGES', () => {
      it('reports every mapped page dirty for a vfio-pci group, before and after a DMA, as Linux 6.12 did', () => {
        const { host, legacy, groupFds, read } = setup();
        legacy.dirty(START);
        if (isSim(host)) expect(host.census().objects.iommu_dirty_tracking).toBe(1);
        expect(read()).toEqual(ALL16);
        const dev = groupDeviceFd(host, groupFds[0]!, pciName);
        if (isSim(host)) {
          busMaster(host, DEV);
          host.deviceDma(DEV, IOVA + 0x5000n, new Uint8Array(2048));
        }
        expect(read()).toEqual(ALL16);
        expect(read()).toEqual(ALL16); // and again: nothing is ever clean
        legacy.dirty(STOP);
        if (isSim(host)) expect(host.census().objects.iommu_dirty_tracking).toBeUndefined();
        host.close(dev);
      });

      it('START and STOP are idempotent; GET_BITMAP needs tracking on (EINVAL)', () => {
        const { legacy, read } = setup();
        fails('EINVAL', () => read());
        legacy.dirty(START);
        legacy.dirty(START);
        read();
        legacy.dirty(STOP);
        legacy.dirty(STOP);
        fails('EINVAL', () => read());
      });

      it('checks argsz and flags: exactly one operation', () => {
        const { host, legacy } = setup();
        const raw = (flags: number, argsz?: number) => host.ioctl(legacy.container, VFIO_IOMMU_DIRTY_PAGES, vfio_iommu_type1_dirty_bitmap.encode({ flags, argsz }));
        fails('EINVAL', () => raw(START, 4));
        fails('EINVAL', () => raw(START | STOP));
        fails('EINVAL', () => raw(0));
        fails('EINVAL', () => raw(1 << 5));
        // GET_BITMAP without room for its range struct
        fails('EINVAL', () => raw(VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP));
      });

      it('is a type1v2 feature: a type1 (v1) container says EACCES', () => {
        const { legacy } = setup(VFIO_TYPE1_IOMMU);
        fails('EACCES', () => legacy.dirty(START));
      });

      it('GET_BITMAP checks pgsize, the bitmap size, alignment, and refuses to bisect a mapping', () => {
        const { legacy, bitmap, read } = setup();
        legacy.dirty(START);
        const get = (iova: bigint, size: bigint, pgsize = PAGE, bytes = 8n) => legacy.getBitmap(iova, size, { pgsize, size: bytes, data: bitmap.addr });
        fails('EINVAL', () => get(IOVA, 16n * PAGE, 2n * PAGE));
        fails('EINVAL', () => get(IOVA, 16n * PAGE, 0n));
        fails('EINVAL', () => get(IOVA, 16n * PAGE, PAGE, 0n));
        fails('EINVAL', () => get(IOVA, 16n * PAGE, PAGE, (1n << 28n) + 8n)); // beyond DIRTY_BITMAP_SIZE_MAX
        fails('EINVAL', () => get(IOVA, 128n * PAGE, PAGE, 8n)); // 128 pages need 16 bytes
        fails('EINVAL', () => get(IOVA + 1n, 16n * PAGE));
        fails('EINVAL', () => get(IOVA, 8n * PAGE)); // bisects the mapping
        fails('EINVAL', () => get(IOVA + PAGE, 15n * PAGE));
        fails('EFAULT', () => legacy.getBitmap(IOVA, 16n * PAGE, { pgsize: PAGE, size: 8n, data: 0x1000n }));
        // A range with holes around the mapping is fine; bits sit at the mapping's offset.
        expect(read(IOVA - 8n * PAGE, 32n * PAGE)).toEqual(ALL16.map((i) => i + 8));
      });

      it('ORs a mapping into the word it starts inside, keeping all that word had, and rewrites the words after it', () => {
        const { legacy, bitmap } = setup();
        legacy.dirty(START);
        // Starting on a word boundary (bits 64-79), the mapping's words are rewritten whole.
        bitmap.bytes.fill(0xff, 0, 24);
        legacy.getBitmap(IOVA - 64n * PAGE, 128n * PAGE, { pgsize: PAGE, size: 16n, data: bitmap.addr });
        expect([...bitmap.bytes.subarray(0, 16)]).toEqual([...new Array(8).fill(0xff), 0xff, 0xff, 0, 0, 0, 0, 0, 0]);
        // Bits 56-71: word 0 is ORed (all its bits stay set), word 1 rewritten (bits 0-7 dirty, the
        // rest cleared), word 2 untouched. (Linux keeps the ORed bits in the mapping's own bitmap
        // past its end, and a later unshifted read would report them: this read comes last.)
        bitmap.bytes.fill(0xff, 0, 24);
        legacy.getBitmap(IOVA - 56n * PAGE, 128n * PAGE, { pgsize: PAGE, size: 16n, data: bitmap.addr });
        expect([...bitmap.bytes.subarray(0, 24)]).toEqual([...new Array(8).fill(0xff), 0xff, 0, 0, 0, 0, 0, 0, 0, ...new Array(8).fill(0xff)]);
      });
    });

    describe('VFIO_IOMMU_UNMAP_DMA with GET_DIRTY_BITMAP', () => {
      it('reports the mappings it unmaps', () => {
        const { legacy, bitmap } = setup();
        legacy.dirty(START);
        expect(legacy.unmap(IOVA, 16n * PAGE, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, { pgsize: PAGE, size: 8n, data: bitmap.addr })).toBe(16n * PAGE);
        expect(setBits(bitmap.bytes, 16)).toEqual(ALL16);
      });

      it('needs tracking on, the smallest page, room for the bitmap, and no ALL or VADDR', () => {
        const { legacy, bitmap } = setup();
        const bm = { pgsize: PAGE, size: 8n, data: bitmap.addr };
        fails('EINVAL', () => legacy.unmap(IOVA, 16n * PAGE, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, bm));
        legacy.dirty(START);
        fails('EINVAL', () => legacy.unmap(IOVA, 16n * PAGE, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, { ...bm, pgsize: 2n * PAGE }));
        fails('EINVAL', () => legacy.unmap(IOVA, 16n * PAGE, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP));
        fails('EINVAL', () => legacy.unmap(0n, 0n, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL, bm));
        fails('EINVAL', () => legacy.unmap(IOVA, 512n * PAGE, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, bm));
        expect(legacy.unmap(IOVA, 16n * PAGE)).toBe(16n * PAGE);
      });
    });
  });
}

for (const target of type1Targets()) describeType1Dirty(target);

describe('mdev (pinned page) dirty scope', () => {
  it('reports only the pages an mdev wrote, and clears them on read', () => {
    const { host, legacy, groupFds, read } = setup([9]);
    legacy.dirty(START);
    expect(read()).toEqual([]);
    const dev = groupDeviceFd(host, groupFds[0]!, MDEV);
    busMaster(host, MDEV);
    host.deviceDma(MDEV, IOVA + 0x3ff0n, new Uint8Array(0x20));
    expect(read()).toEqual([3, 4]);
    expect(read()).toEqual([]);
    // Writes before START are not reported.
    legacy.dirty(STOP);
    host.deviceDma(MDEV, IOVA, new Uint8Array(1));
    legacy.dirty(START);
    expect(read()).toEqual([]);
    host.close(dev);
  });

  it('a vfio-pci group beside the mdev makes every page dirty again', () => {
    const { legacy, read } = setup([9, 3]);
    legacy.dirty(START);
    expect(read()).toEqual(ALL16);
  });
});

describe('scale', () => {
  it('a 1 TiB mapping: map, read its 32 MiB dirty bitmap, unmap, in normal test time', () => {
    const host = machine();
    const legacy = new Legacy(host);
    legacy.group(5); // 0000:00:05.0, behind the 48-bit IOMMU
    legacy.setIommu();
    const TiB = 1n << 40n;
    const big = anon(host, TiB);
    legacy.map(big.addr, TiB, TiB);
    legacy.dirty(START);
    const bytes = TiB / PAGE / 8n;
    const bitmap = anon(host, bytes);
    const t0 = performance.now();
    legacy.getBitmap(TiB, TiB, { pgsize: PAGE, size: bytes, data: bitmap.addr });
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(bitmap.bytes[0]).toBe(0xff);
    expect(bitmap.bytes[Number(bytes) - 1]).toBe(0xff);
    expect(bitmap.bytes.every((b) => b === 0xff)).toBe(true);
    expect(legacy.unmap(0n, 0n, VFIO_DMA_UNMAP_FLAG_ALL)).toBe(TiB);
  });
});
