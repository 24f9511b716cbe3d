// iommufd's VFIO type1 compatibility container (drivers/iommu/iommufd/vfio_compat.c): the
// selftests' iommufd and vfio_compat_mock_domain fixtures (Linux 6.12) ported to the host port (on
// SimHost, and in the kernel tier on the real kernel's mock), and VFIO groups set to an iommufd.

import { afterEach, describe, expect, it } from 'vitest';
import { type HostKernel } from '@vmmkit/core';
import {
  IOMMU_OPTION, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, IOMMU_VFIO_IOAS, IOMMU_VFIO_IOAS_SET,
  MOCK_APERTURE_LAST, MOCK_APERTURE_START, O_RDWR, VFIO_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU,
  VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_VADDR, VFIO_DMA_MAP_FLAG_WRITE, VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, VFIO_DMA_UNMAP_FLAG_VADDR, VFIO_GET_API_VERSION, VFIO_GROUP_UNSET_CONTAINER,
  VFIO_IOMMU_DIRTY_PAGES, VFIO_IOMMU_GET_INFO, VFIO_IOMMU_DIRTY_PAGES_FLAG_START, VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, VFIO_IOMMU_UNMAP_DMA, VFIO_SET_IOMMU,
  VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_UPDATE_VADDR, iommu_option, iommu_vfio_ioas,
  vfio_iommu_type1_dirty_bitmap, vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap, vfio_iommu_type1_info,
  vfio_iommu_type1_info_cap_iova_range, vfio_iommu_type1_info_dma_avail,
} from '@vmmkit/core/uapi';
import { SimDmaFault } from '../src/index.js';
import {
  anon, busMaster, call, fails, groupDeviceFd, Iommufd, Legacy, machine, mockDomain, PAGE, setContainer, type1Info,
} from './iommufd-helpers.js';
import { onTarget, selftestTargets, type HostTarget } from './host-targets.js';

const BUFFER_SIZE = 16n * PAGE;
const RW = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;

/** The compat container's selftest cases on one host: a fresh SimHost per case, or the real kernel's mock. */
function describeCompat(target: HostTarget): void {
  const opened: Iommufd<HostKernel>[] = [];
  afterEach(() => {
    for (const io of opened.splice(0)) io.close();
  });
  /** An iommufd on a fresh host, closed after the case. */
  const open = (): Iommufd<HostKernel> => {
    const io = new Iommufd(target.host());
    opened.push(io);
    return io;
  };

  describe.skipIf(target.unavailable !== undefined)(onTarget('the VFIO compat container', target), () => {
    describe('TEST_F(iommufd, ...): the compat ioctls without a compat IOAS', () => {
      it('simple_ioctls', () => {
        const io = open();
        expect(io.host.ioctl(io.fd, VFIO_GET_API_VERSION)).toBe(VFIO_API_VERSION);
        expect(io.host.ioctl(io.fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU)).toBe(1);
      });

      it('unmap_cmd, map_cmd, info_cmd, set_iommu_cmd: EINVAL for bad arguments, then ENODEV', () => {
        const io = open();
        const { host, fd } = io;
        const unmap = (v: object) => call(host, fd, VFIO_IOMMU_UNMAP_DMA, vfio_iommu_type1_dma_unmap, { iova: MOCK_APERTURE_START, size: PAGE, ...v });
        fails('EINVAL', () => unmap({ argsz: 1 }));
        fails('EINVAL', () => unmap({ flags: 1 << 31 }));
        fails('ENODEV', () => unmap({}));
        const buf = anon(host, PAGE);
        const map = (v: object) => call(host, fd, VFIO_IOMMU_MAP_DMA, vfio_iommu_type1_dma_map, { iova: MOCK_APERTURE_START, size: PAGE, vaddr: buf.addr, ...v });
        fails('EINVAL', () => map({ argsz: 1 }));
        fails('EINVAL', () => map({ flags: 1 << 31 }));
        fails('ENODEV', () => map({ flags: RW }));
        fails('EINVAL', () => type1Info(host, fd, 1));
        fails('ENODEV', () => type1Info(host, fd, vfio_iommu_type1_info.size));
        fails('ENODEV', () => host.ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
        fails('ENODEV', () => host.ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU));
      });
    });

    /** FIXTURE(vfio_compat_mock_domain): a mock domain on an IOAS made the compat IOAS, then SET_IOMMU. */
    function compatMock(version: number) {
      const io = open();
      const ioas = io.ioasAlloc();
      mockDomain(io, ioas);
      call(io.host, io.fd, IOMMU_VFIO_IOAS, iommu_vfio_ioas, { op: IOMMU_VFIO_IOAS_SET, ioas_id: ioas });
      io.host.ioctl(io.fd, VFIO_SET_IOMMU, version);
      const buffer = anon(io.host, 64n * PAGE);
      const map = (vaddr: bigint, iova: bigint, size: bigint) => call(io.host, io.fd, VFIO_IOMMU_MAP_DMA, vfio_iommu_type1_dma_map, { vaddr, iova, size, flags: RW });
      const unmap = (iova: bigint, size: bigint, flags = 0) => call(io.host, io.fd, VFIO_IOMMU_UNMAP_DMA, vfio_iommu_type1_dma_unmap, { iova, size, flags }).size;
      return { io, host: io.host, fd: io.fd, ioas, buffer, map, unmap };
    }

    describe.each([
      { name: 'Ver1v2', version: VFIO_TYPE1v2_IOMMU },
      { name: 'Ver1v0', version: VFIO_TYPE1_IOMMU },
    ])('vfio_compat_mock_domain $name', ({ version }) => {
      it('option_huge_pages: type1 (v1) turns large pages off on the compat IOAS', () => {
        const self = compatMock(version);
        const out = call(self.host, self.fd, IOMMU_OPTION, iommu_option, {
          option_id: IOMMU_OPTION_HUGE_PAGES, op: IOMMU_OPTION_OP_GET, val64: 3n, object_id: self.ioas,
        });
        expect(out.val64).toBe(version === VFIO_TYPE1_IOMMU ? 0n : 1n);
      });

      it('get_info: pre-cap ABI, the chain size, and no write past argsz at any size', () => {
        const { host, fd } = compatMock(version);
        const pre = type1Info(host, fd, 16);
        expect(pre.info.flags).toBe(0x3);
        expect(pre.info.iova_pgsizes).not.toBe(0n);
        const sized = type1Info(host, fd, vfio_iommu_type1_info.size);
        expect(sized.info.cap_offset).toBe(0);
        const caplen = sized.info.argsz;
        expect(caplen).toBeGreaterThan(vfio_iommu_type1_info.size);
        for (let i = vfio_iommu_type1_info.size; i <= caplen + 8; i++) {
          const bytes = new Uint8Array(caplen + 64).fill(0xaa);
          bytes.fill(0, 0, i);
          new DataView(bytes.buffer).setUint32(0, i, true);
          host.ioctl(fd, VFIO_IOMMU_GET_INFO, bytes);
          expect(bytes.subarray(i).every((b) => b === 0xaa), `argsz ${i}`).toBe(true);
          const info = vfio_iommu_type1_info.decode(bytes);
          expect(info.flags).toBe(0x3);
          expect(info.cap_offset).toBe(i >= caplen ? vfio_iommu_type1_info.size : 0);
        }
        // The chain: DMA_AVAIL (U32_MAX, 12 bytes, the next cap 8-byte aligned after it), IOVA_RANGE.
        const { caps, bytes } = type1Info(host, fd, caplen);
        expect([...caps.keys()]).toEqual([VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE]);
        const avail = caps.get(VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL)!.offset;
        expect(vfio_iommu_type1_info_dma_avail.decode(bytes, avail).avail).toBe(0xffffffff);
        const at = caps.get(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE)!.offset;
        expect(at).toBe(avail + 16);
        expect(vfio_iommu_type1_info_cap_iova_range.decode(bytes, at).nr_iovas).toBe(1);
        expect(vfio_iommu_type1_info_cap_iova_range.readFlex(bytes, 1, at)).toEqual([{ start: MOCK_APERTURE_START, end: MOCK_APERTURE_LAST }]);
      });

      it('map: map/unmap, UNMAP_FLAG_ALL needs iova and size 0, small pages unmapped in any order', () => {
        const self = compatMock(version);
        const { buffer, map, unmap } = self;
        map(buffer.addr, MOCK_APERTURE_START, BUFFER_SIZE);
        expect(unmap(MOCK_APERTURE_START, BUFFER_SIZE)).toBe(BUFFER_SIZE);
        map(buffer.addr, MOCK_APERTURE_START, BUFFER_SIZE);
        fails('EINVAL', () => unmap(MOCK_APERTURE_START, BUFFER_SIZE, VFIO_DMA_UNMAP_FLAG_ALL));
        expect(unmap(0n, 0n, VFIO_DMA_UNMAP_FLAG_ALL)).toBe(BUFFER_SIZE);
        const iovas = Array.from({ length: 16 }, (_, i) => MOCK_APERTURE_START + BigInt(i) * PAGE);
        iovas.forEach((iova, i) => map(buffer.addr + BigInt(i) * PAGE, iova, PAGE));
        for (const i of [5, 0, 15, 3, 9, 1, 12, 7, 2, 14, 4, 11, 6, 13, 8, 10]) expect(unmap(iovas[i]!, PAGE)).toBe(PAGE);
      });

      it('huge_map: type1 (v1) can cut a big mapping up; type1v2 refuses with ENOENT', () => {
        const self = compatMock(version);
        const size = 4n << 20n;
        const huge = anon(self.host, size + (2n << 20n));
        const va = (huge.addr + (2n << 20n) - 1n) & ~((2n << 20n) - 1n);
        self.map(va, MOCK_APERTURE_START, size);
        const piece = size / 16n;
        for (const i of [3n, 0n, 15n, 8n, 1n, 14n, 2n, 9n, 4n, 13n, 5n, 12n, 6n, 11n, 7n, 10n]) {
          if (version === VFIO_TYPE1_IOMMU) expect(self.unmap(MOCK_APERTURE_START + i * piece, piece)).toBe(piece);
          else fails('ENOENT', () => self.unmap(MOCK_APERTURE_START + i * piece, piece));
        }
      });

      it('an unmap of an empty range succeeds with size 0 (6.12 stable); DIRTY_PAGES and dirty/VADDR unmaps are not served', () => {
        const self = compatMock(version);
        expect(self.unmap(MOCK_APERTURE_START, PAGE)).toBe(0n);
        fails('ENOTTY', () => self.host.ioctl(self.fd, VFIO_IOMMU_DIRTY_PAGES, vfio_iommu_type1_dirty_bitmap.encode({ flags: VFIO_IOMMU_DIRTY_PAGES_FLAG_START })));
        self.map(self.buffer.addr, MOCK_APERTURE_START, PAGE);
        fails('EINVAL', () => self.unmap(MOCK_APERTURE_START, PAGE, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP));
        fails('EINVAL', () => self.unmap(MOCK_APERTURE_START, PAGE, VFIO_DMA_UNMAP_FLAG_VADDR));
        fails('EINVAL', () => call(self.host, self.fd, VFIO_IOMMU_MAP_DMA, vfio_iommu_type1_dma_map, {
          vaddr: self.buffer.addr, iova: MOCK_APERTURE_START, size: PAGE, flags: VFIO_DMA_MAP_FLAG_VADDR,
        }));
        expect(self.host.ioctl(self.fd, VFIO_CHECK_EXTENSION, VFIO_UPDATE_VADDR)).toBe(0);
        fails('EEXIST', () => self.map(self.buffer.addr, MOCK_APERTURE_START, PAGE));
      });
    });
  });
}

for (const target of selftestTargets()) describeCompat(target);

describe('VFIO groups set to an iommufd', () => {
  /** Group 3 set to an iommufd (which makes its compat IOAS), TYPE1v2, and 0000:00:03.0 opened. */
  function setup() {
    const io = new Iommufd(machine());
    const group = io.host.open('/dev/vfio/3', O_RDWR);
    setContainer(io.host, group, io.fd);
    expect(io.host.census().objects.ioas).toBe(1);
    io.host.ioctl(io.fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU);
    const dev = groupDeviceFd(io.host, group, '0000:00:03.0');
    busMaster(io.host, '0000:00:03.0');
    return { io, host: io.host, group, dev };
  }

  it('opening a device binds it and attaches it to the compat IOAS; MAP_DMA then reaches it', () => {
    const { io, host } = setup();
    expect(host.census().objects.device_bind).toBe(1);
    expect(host.census().objects.hwpt).toBe(1);
    const buf = anon(host, 4n * PAGE);
    call(host, io.fd, VFIO_IOMMU_MAP_DMA, vfio_iommu_type1_dma_map, { vaddr: buf.addr, iova: 0x100000n, size: 4n * PAGE, flags: RW });
    host.deviceDma('0000:00:03.0', 0x100001n, new Uint8Array([8]));
    expect(buf.bytes[1]).toBe(8);
    // The compat IOAS sees the VT-d device's holes, like type1 would.
    const { caps, bytes } = type1Info(host, io.fd);
    const at = caps.get(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE)!.offset;
    expect(vfio_iommu_type1_info_cap_iova_range.readFlex(bytes, 2, at)).toEqual([
      { start: 0n, end: 0xfedfffffn }, { start: 0xfef00000n, end: 0x7fffffffffn },
    ]);
    expect(host.ioctl(io.fd, VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU)).toBe(0);
  });

  it('closing the device unbinds it; closing the group and the iommufd releases everything', () => {
    const { io, host, group, dev } = setup();
    const start = { ...host.census().objects };
    expect(start.group_attach).toBe(1);
    host.close(dev);
    expect(host.census().objects.device_bind).toBeUndefined();
    expect(() => host.deviceDma('0000:00:03.0', 0x100000n, new Uint8Array(1))).toThrow(SimDmaFault);
    host.close(group);
    io.close();
    const objects = host.census().objects;
    expect([objects.ioas, objects.group_attach, objects.hwpt]).toEqual([undefined, undefined, undefined]);
  });

  it('the group file does not hold the iommufd device open: UNSET_CONTAINER works with the device open', () => {
    const { io, host, group } = setup();
    host.ioctl(group, VFIO_GROUP_UNSET_CONTAINER);
    expect(host.census().objects.device_bind).toBe(1); // the device stays bound until its fd closes
    void io;
  });

  it('a second group shares the compat IOAS; a legacy container cannot take an iommufd group', () => {
    const { io, host } = setup();
    const g4 = host.open('/dev/vfio/4', O_RDWR);
    setContainer(host, g4, io.fd);
    expect(host.census().objects.ioas).toBe(1);
    groupDeviceFd(host, g4, '0000:00:04.0');
    expect(host.census().objects.hwpt).toBe(1); // the same unit: one auto HWPT
    fails('EINVAL', () => setContainer(host, g4, new Legacy(host).container));
  });
});
