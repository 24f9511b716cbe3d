// What differs between Linux 6.12 and 7.2 (packages/sim/src/kernel/linux-series.ts), case by case:
// each host is held to its own series, so SimHost in 6.12 and in 7.2 mode run here, and in the
// kernel tier Linux 7.2 itself.

import { afterEach, describe, expect, it } from 'vitest';
import { type HostKernel, type   HostMapping } from '@vmmkit/core';
import {
  IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED, IOMMU_HW_INFO_FLAG_INPUT_TYPE, IOMMU_HWPT_ALLOC_PASID, iommu_hw_info_7_2,
  MOCK_FLAGS_DEVICE_PASID, VFIO_DEVICE_BIND_FLAG_TOKEN, vfio_device_bind_iommufd_7_2, IOMMU_GET_HW_INFO,
  IOMMU_HW_CAP_DIRTY_TRACKING, IOMMU_HW_INFO_TYPE_INTEL_VTD, IOMMU_HW_INFO_TYPE_SELFTEST,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_FAULT_ID_VALID, MOCK_APERTURE_START,
  MOCK_FLAGS_DEVICE_HUGE_IOVA, MOCK_FLAGS_DEVICE_NO_DIRTY, O_RDWR, VFIO_CHECK_EXTENSION,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START, VFIO_DEVICE_BIND_IOMMUFD, VFIO_TYPE1_NESTING_IOMMU,
} from '@vmmkit/core/uapi';
import { anon, call, fails, Iommufd, Legacy, MACHINE, mockDomain, mockSetDirty, PAGE, setBits } from './iommufd-helpers.js';
import {
  iommufdTargets, onTarget, pciCdev, pciGroup, selftestTargets, seriesOf, type1Targets, withSim72, type HostTarget,
} from './host-targets.js';

const KB2 = 2048n;

/** What a case opened, released after it. */
class Scope {
  readonly fds: [HostKernel, number][] = [];
  readonly maps: HostMapping[] = [];

  iommufd(host: HostKernel): Iommufd<HostKernel> {
    const io = new Iommufd(host);
    this.fds.push([host, io.fd]);
    return io;
  }

  release(): void {
    for (const [host, fd] of this.fds.splice(0).reverse()) host.close(fd);
    for (const m of this.maps.splice(0)) m.unmap();
  }
}

/** IOMMU_GET_HW_INFO with flags and in_data_type, no data. */
function hwInfo(io: Iommufd<HostKernel>, devId: number, flags = 0, inType = 0) {
  return call(io.host, io.fd, IOMMU_GET_HW_INFO, iommu_hw_info_7_2, { dev_id: devId, flags, in_data_type: inType });
}

function describeMock(target: HostTarget): void {
  describe.skipIf(target.unavailable !== undefined)(onTarget('the 6.12 / 7.2 differences of iommufd and its mock', target), () => {
    const scope = new Scope();
    afterEach(() => scope.release());
    const open = (): { io: Iommufd<HostKernel>; v72: boolean } => {
      const io = scope.iommufd(target.host());
      return { io, v72: seriesOf(io.host) !== '6.12' };
    };

    it('GET_HW_INFO: 7.x takes IOMMU_HW_INFO_FLAG_INPUT_TYPE and reports ATS_NOT_SUPPORTED', () => {
      const { io, v72 } = open();
      const { idev } = mockDomain(io, io.ioasAlloc());
      const noDirty = mockDomain(io, io.ioasAlloc(), MOCK_FLAGS_DEVICE_NO_DIRTY);
      const ats = v72 ? BigInt(IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED) : 0n;
      expect(hwInfo(io, idev).out_capabilities).toBe(BigInt(IOMMU_HW_CAP_DIRTY_TRACKING) | ats);
      expect(hwInfo(io, noDirty.idev).out_capabilities).toBe(ats);
      // Without the flag, in_data_type is output only: any value in it is ignored.
      expect(hwInfo(io, idev, 0, 0x1234).out_data_type).toBe(IOMMU_HW_INFO_TYPE_SELFTEST);
      if (!v72) {
        fails('EOPNOTSUPP', () => hwInfo(io, idev, IOMMU_HW_INFO_FLAG_INPUT_TYPE));
        return;
      }
      expect(hwInfo(io, idev, IOMMU_HW_INFO_FLAG_INPUT_TYPE).out_data_type).toBe(IOMMU_HW_INFO_TYPE_SELFTEST);
      expect(hwInfo(io, idev, IOMMU_HW_INFO_FLAG_INPUT_TYPE, IOMMU_HW_INFO_TYPE_SELFTEST).out_data_type).toBe(IOMMU_HW_INFO_TYPE_SELFTEST);
      fails('EOPNOTSUPP', () => hwInfo(io, idev, IOMMU_HW_INFO_FLAG_INPUT_TYPE, IOMMU_HW_INFO_TYPE_INTEL_VTD));
      fails('EOPNOTSUPP', () => hwInfo(io, idev, 2));
      // The flags are checked before the device is looked up.
      fails('EOPNOTSUPP', () => hwInfo(io, 0, 2));
    });

    it('MOCK_DOMAIN_FLAGS: 6.12 knows HUGE_IOVA, 7.x PASID (and reports its 20 PASID bits)', () => {
      const { io, v72 } = open();
      const ioas = io.ioasAlloc();
      if (v72) {
        fails('EINVAL', () => mockDomain(io, ioas, MOCK_FLAGS_DEVICE_HUGE_IOVA));
        const pasid = mockDomain(io, ioas, MOCK_FLAGS_DEVICE_PASID);
        expect(hwInfo(io, pasid.idev).out_max_pasid_log2).toBe(20);
      } else {
        fails('EINVAL', () => mockDomain(io, ioas, MOCK_FLAGS_DEVICE_PASID));
        mockDomain(io, ioas, MOCK_FLAGS_DEVICE_HUGE_IOVA);
      }
      expect(hwInfo(io, mockDomain(io, ioas).idev).out_max_pasid_log2).toBe(0);
    });

    it('HWPT_ALLOC: 6.12 refuses FAULT_ID_VALID and ALLOC_PASID for a paging HWPT; 7.x looks the fault queue up', () => {
      const { io, v72 } = open();
      const ioas = io.ioasAlloc();
      const { idev } = mockDomain(io, ioas);
      fails(v72 ? 'ENOENT' : 'EOPNOTSUPP', () => io.hwptAlloc(idev, ioas, IOMMU_HWPT_FAULT_ID_VALID));
      fails('EOPNOTSUPP', () => io.hwptAlloc(idev, ioas, IOMMU_HWPT_FAULT_ID_VALID | IOMMU_HWPT_ALLOC_NEST_PARENT));
      if (v72) expect(io.hwptAlloc(idev, ioas, IOMMU_HWPT_ALLOC_PASID | IOMMU_HWPT_ALLOC_DIRTY_TRACKING)).toBeGreaterThan(0);
      else fails('EOPNOTSUPP', () => io.hwptAlloc(idev, ioas, IOMMU_HWPT_ALLOC_PASID));
    });

    it('IOMMU_TEST_OP_DIRTY with 4 KiB pages: 6.12 looks up a 2 KiB page table by index, 7.x marks the IOVA', () => {
      const { io, v72 } = open();
      const ioas = io.ioasAlloc();
      const buffer = anon(io.host, 16n * PAGE);
      scope.maps.push(buffer);
      io.map(ioas, buffer.addr, 16n * PAGE, MOCK_APERTURE_START);
      const hwpt = io.hwptAlloc(mockDomain(io, ioas).idev, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
      mockDomain(io, hwpt);
      io.setDirty(hwpt, true);
      const bits = anon(io.host, PAGE);
      scope.maps.push(bits);
      bits.bytes[0] = 0b10; // the second 4 KiB page
      // 6.12 looks up entry (start + 4K) / 4K of its 2 KiB-page table: IOVA 8 MiB + 2 KiB, unmapped.
      expect(mockSetDirty(io, hwpt, 2n * PAGE, MOCK_APERTURE_START, PAGE, bits.addr)).toBe(v72 ? 1n : 0n);
      bits.bytes.fill(0);
      io.getDirty(hwpt, MOCK_APERTURE_START, 16n * PAGE, KB2, bits.addr);
      // 7.x's mock maps the 4 KiB page with one IOPTE of two 2 KiB entries and reports the first.
      expect(setBits(bits.bytes, 32)).toEqual(v72 ? [2] : []);
    });
  });
}

function describeType1(target: HostTarget): void {
  describe.skipIf(target.unavailable !== undefined)(onTarget('the 6.12 / 7.2 differences of VFIO type1', target), () => {
    it('VFIO_TYPE1_NESTING_IOMMU: claimed by 6.12, gone since 6.13', () => {
      const host = target.host(MACHINE);
      const fd = host.open('/dev/vfio/vfio', O_RDWR);
      try {
        expect(host.ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1_NESTING_IOMMU)).toBe(seriesOf(host) === '6.12' ? 1 : 0);
      } finally {
        host.close(fd);
      }
    });

    const group = pciGroup(target);
    it.skipIf(group.unavailable !== undefined)(`ranges at the top of the IOVA space: 7.x says EOVERFLOW past it${group.unavailable ? ` (${group.unavailable})` : ''}`, () => {
      const host = target.host(MACHINE);
      const legacy = new Legacy(host);
      const groupFd = legacy.group(group.group!);
      const buffer = anon(host, 2n * PAGE);
      try {
        legacy.setIommu();
        const v72 = seriesOf(host) !== '6.12';
        const top = (1n << 64n) - PAGE;
        fails(v72 ? 'EOVERFLOW' : 'EINVAL', () => legacy.map(buffer.addr, top, 2n * PAGE));
        fails('EINVAL', () => legacy.map(buffer.addr, PAGE, 0n));
        legacy.dirty(VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
        const bitmap = { pgsize: PAGE, size: 8n, data: buffer.addr };
        // A range ending at the very top: 6.12 computes iova + size, which wraps (EINVAL); 7.x is fine.
        if (v72) legacy.getBitmap(top, PAGE, bitmap);
        else fails('EINVAL', () => legacy.getBitmap(top, PAGE, bitmap));
        fails(v72 ? 'EOVERFLOW' : 'EINVAL', () => legacy.getBitmap(top, 2n * PAGE, bitmap));
        fails(v72 ? 'EOVERFLOW' : 'EINVAL', () => legacy.unmap(top, 2n * PAGE));
      } finally {
        host.close(groupFd);
        host.close(legacy.container);
        buffer.unmap();
      }
    });
  });
}

function describeCdev(target: HostTarget): void {
  const cdev = pciCdev(target);
  const unavailable = target.unavailable ?? cdev.unavailable;
  describe.skipIf(unavailable !== undefined)(onTarget('the 6.12 / 7.2 differences of device cdevs', { ...target, unavailable }), () => {
    const scope = new Scope();
    afterEach(() => scope.release());

    it('VFIO_DEVICE_BIND_IOMMUFD: 7.x reads a 24-byte struct (E2BIG past it) and takes a VF token flag', () => {
      const host = target.host(MACHINE);
      const io = scope.iommufd(host);
      const fd = host.open(`/dev/vfio/devices/vfio${cdev.index}`, O_RDWR);
      scope.fds.push([host, fd]);
      const v72 = seriesOf(host) !== '6.12';
      const bind = (argsz: number, flags = 0, tail = 0, token = 0n): Uint8Array => {
        const bytes = new Uint8Array(64);
        bytes.set(vfio_device_bind_iommufd_7_2.encode({ argsz, flags, iommufd: io.fd, token_uuid_ptr: token }));
        bytes[40] = tail;
        host.ioctl(fd, VFIO_DEVICE_BIND_IOMMUFD, bytes);
        return bytes;
      };
      fails('EINVAL', () => bind(12));
      // A token: EINVAL on 6.12 (no flags), EFAULT reading it, then EINVAL (no VF token wanted here) on 7.x.
      fails(v72 ? 'EFAULT' : 'EINVAL', () => bind(24, VFIO_DEVICE_BIND_FLAG_TOKEN, 0, 8n));
      const uuid = anon(host, PAGE);
      scope.maps.push(uuid);
      fails('EINVAL', () => bind(24, VFIO_DEVICE_BIND_FLAG_TOKEN, 0, uuid.addr));
      if (v72) fails('E2BIG', () => bind(48, 0, 1));
      const out = bind(48);
      expect(vfio_device_bind_iommufd_7_2.decode(out).out_devid).toBeGreaterThan(0);
    });
  });
}

for (const target of withSim72(selftestTargets())) describeMock(target);
for (const target of withSim72(type1Targets())) describeType1(target);
for (const target of withSim72(iommufdTargets())) describeCdev(target);
