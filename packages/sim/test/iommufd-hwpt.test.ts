// HWPTs and IOMMU dirty tracking (drivers/iommu/iommufd/hw_pagetable.c, device.c, io_pagetable.c):
// IOMMU_HWPT_ALLOC, IOMMU_GET_HW_INFO, IOMMU_HWPT_SET_DIRTY_TRACKING, IOMMU_HWPT_GET_DIRTY_BITMAP,
// with devices writing through the IO page tables.

import { describe, expect, it } from 'vitest';
import {
  IOMMU_GET_HW_INFO, IOMMU_HW_CAP_DIRTY_TRACKING, IOMMU_HW_INFO_TYPE_INTEL_VTD, IOMMU_HWPT_ALLOC,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_DATA_VTD_S1, IOMMU_HWPT_FAULT_ID_VALID,
  IOMMU_HWPT_GET_DIRTY_BITMAP, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, IOMMU_HWPT_SET_DIRTY_TRACKING, IOMMU_OPTION,
  IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, iommu_hw_info, iommu_hw_info_vtd, iommu_hwpt_alloc,
  iommu_hwpt_get_dirty_bitmap, iommu_hwpt_set_dirty_tracking, iommu_option,
} from '@vmmkit/core/uapi';
import type { SimHostConfig } from '../src/index.js';
import { anon, busMaster, call, Cdev, fails, Iommufd, machine, MACHINE, MDEV, PAGE, setBits } from './iommufd-helpers.js';

const DEV = '0000:00:03.0';
const MB2 = 2n << 20n;

/** An iommufd with 0000:00:03.0 (dirty-capable VT-d) bound, 64 pages mapped at 0x100000. */
function setup(config: SimHostConfig = MACHINE) {
  const io = new Iommufd(machine(config));
  const ioas = io.ioasAlloc();
  const dev = new Cdev(io.host, 0);
  const devid = dev.bind(io.fd);
  const buf = anon(io.host, 64n * PAGE);
  io.map(ioas, buf.addr, 64n * PAGE, 0x100000n);
  busMaster(io.host, DEV);
  return { io, host: io.host, ioas, dev, devid, buf };
}

/** A dirty-tracking HWPT with 0000:00:03.0 attached and tracking on. */
function tracking(config: SimHostConfig = MACHINE) {
  const s = setup(config);
  const hwpt = s.io.hwptAlloc(s.devid, s.ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
  s.dev.attach(hwpt);
  s.io.setDirty(hwpt, true);
  const bitmap = anon(s.host, PAGE);
  const read = (iova = 0x100000n, length = 64n * PAGE, pageSize = PAGE, flags = 0, at = 0n): number[] => {
    bitmap.bytes.fill(0);
    s.io.getDirty(hwpt, iova, length, pageSize, bitmap.addr + at, flags);
    return setBits(bitmap.bytes.subarray(Number(at)), Number(length / pageSize));
  };
  return { ...s, hwpt, bitmap, read };
}

describe('IOMMU_HWPT_ALLOC', () => {
  it('allocates paging HWPTs on an IOAS for a bound device', () => {
    const { io, host, ioas, devid } = setup();
    const hwpt = io.hwptAlloc(devid, ioas);
    expect(hwpt).toBe(devid + 1);
    expect(io.hwptAlloc(devid, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING)).toBe(hwpt + 1);
    expect(host.census().objects.hwpt).toBe(2);
    fails('EBUSY', () => io.destroy(ioas));
    io.destroy(hwpt);
    expect(host.census().objects.hwpt).toBe(1);
  });

  it('refuses what the VT-d driver cannot do, as the realhost probe saw: NEST_PARENT and, without SLADS, DIRTY_TRACKING', () => {
    const { io, ioas, devid } = setup();
    fails('EOPNOTSUPP', () => io.hwptAlloc(devid, ioas, IOMMU_HWPT_ALLOC_NEST_PARENT));
    const other = new Cdev(io.host, 2).bind(io.fd); // 0000:00:05.0, behind iommu1 without dirty tracking
    fails('EOPNOTSUPP', () => io.hwptAlloc(other, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING));
    fails('EOPNOTSUPP', () => io.hwptAlloc(devid, ioas, 1 << 7));
    // 6.12 takes no fault queue for a paging HWPT; 7.x does, and then looks the queue up.
    fails('EOPNOTSUPP', () => io.hwptAlloc(devid, ioas, IOMMU_HWPT_FAULT_ID_VALID));
    const v72 = new Iommufd(machine({ ...MACHINE, kernel: '7.2' }));
    const devid72 = new Cdev(v72.host, 0).bind(v72.fd);
    fails('ENOENT', () => v72.hwptAlloc(devid72, v72.ioasAlloc(), IOMMU_HWPT_FAULT_ID_VALID));
    expect(io.host.census().objects.hwpt).toBeUndefined();
    expect(v72.host.census().objects.hwpt).toBeUndefined();
  });

  it('checks ids, reserved fields and driver data', () => {
    const { io, host, ioas, devid } = setup();
    const alloc = (v: object) => call(host, io.fd, IOMMU_HWPT_ALLOC, iommu_hwpt_alloc, { dev_id: devid, pt_id: ioas, ...v });
    fails('EOPNOTSUPP', () => alloc({ __reserved: 1 }));
    fails('EINVAL', () => alloc({ data_len: 8 }));
    fails('EOPNOTSUPP', () => alloc({ data_type: IOMMU_HWPT_DATA_VTD_S1, data_len: 24, data_uptr: anon(host, 24).addr }));
    fails('ENOENT', () => alloc({ dev_id: 99 }));
    fails('ENOENT', () => alloc({ dev_id: ioas }));
    fails('EINVAL', () => alloc({ pt_id: 99 }));
    fails('EINVAL', () => alloc({ pt_id: devid }));
    const mdev = new Cdev(host, 3).bind(io.fd);
    fails('ENOENT', () => alloc({ dev_id: mdev }));
    const hwpt = io.hwptAlloc(devid, ioas);
    fails('EOPNOTSUPP', () => alloc({ pt_id: hwpt }));
    fails('EINVAL', () => alloc({ pt_id: hwpt, data_type: IOMMU_HWPT_DATA_VTD_S1, data_len: 24, data_uptr: anon(host, 24).addr }));
  });

  it('fills the domain from the IOAS: misaligned or out-of-aperture areas and unmapped memory refuse it', () => {
    const io = new Iommufd(machine());
    const devid = new Cdev(io.host, 0).bind(io.fd);
    const buf = anon(io.host, 2n * PAGE);
    const a = io.ioasAlloc();
    io.map(a, buf.addr, 0x800n, 0x100000n);
    fails('EADDRINUSE', () => io.hwptAlloc(devid, a));
    const b = io.ioasAlloc();
    io.map(b, buf.addr, PAGE, 1n << 40n);
    fails('EADDRINUSE', () => io.hwptAlloc(devid, b));
    const c = io.ioasAlloc();
    io.map(c, 0x2000n, PAGE, 0x100000n);
    fails('EFAULT', () => io.hwptAlloc(devid, c));
    expect(io.host.census().objects.hwpt).toBeUndefined();
  });

  it('never lets devices of different IOMMU units share a HWPT (EINVAL, as on SMMUv3)', () => {
    const { io, ioas, devid } = setup();
    const hwpt = io.hwptAlloc(devid, ioas);
    const other = new Cdev(io.host, 2);
    other.bind(io.fd);
    fails('EINVAL', () => other.attach(hwpt));
    const dirty = io.hwptAlloc(devid, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
    fails('EINVAL', () => other.attach(dirty));
    expect(other.attach(ioas)).not.toBe(hwpt); // an automatic domain of its own
  });
});

describe('IOMMU_GET_HW_INFO', () => {
  it('reports VT-d registers consistent with the unit, and DIRTY_TRACKING when it has SLADS', () => {
    const { io, host, devid } = setup();
    const data = anon(host, 64);
    const info = io.hwInfo(devid, data.addr, 64);
    expect(info.out_data_type).toBe(IOMMU_HW_INFO_TYPE_INTEL_VTD);
    expect(info.data_len).toBe(24);
    expect(info.out_capabilities & BigInt(IOMMU_HW_CAP_DIRTY_TRACKING)).toBe(1n);
    const vtd = iommu_hw_info_vtd.decode(data.bytes);
    expect(vtd.flags).toBe(1);
    expect(vtd.cap_reg).toBe(0xd2008c22260286n); // QEMU's VT-d with a 39-bit width, as the realhost probe read it
    expect((vtd.ecap_reg >> 45n) & 1n).toBe(1n);
    expect([...data.bytes.subarray(24, 64)].every((b) => b === 0)).toBe(true);
    const other = new Cdev(host, 2).bind(io.fd);
    const info2 = io.hwInfo(other, data.addr, 24);
    const vtd2 = iommu_hw_info_vtd.decode(data.bytes);
    expect(info2.out_capabilities).toBe(0n);
    expect(vtd2.ecap_reg).toBe(0xf00f4an);
    expect((vtd2.cap_reg >> 16n) & 0x3fn).toBe(47n); // MGAW: 48 bits
    expect((vtd2.cap_reg >> 8n) & 0x1fn).toBe(0b110n); // SAGAW: 3- and 4-level tables
  });

  it('copies at most data_len bytes, returns the kernel length, and checks its arguments', () => {
    const { io, host, devid } = setup();
    const data = anon(host, 8);
    data.bytes.fill(0xaa);
    expect(io.hwInfo(devid, data.addr, 4).data_len).toBe(24);
    expect(data.bytes[4]).toBe(0xaa);
    expect(io.hwInfo(devid).data_len).toBe(24);
    const hw = (v: object) => call(host, io.fd, IOMMU_GET_HW_INFO, iommu_hw_info, { dev_id: devid, ...v });
    fails('EOPNOTSUPP', () => hw({ flags: 1 }));
    fails('EOPNOTSUPP', () => hw({ __reserved: [0, 1, 0] }));
    fails('EFAULT', () => hw({ data_len: 24, data_uptr: 0x10n }));
    fails('ENOENT', () => hw({ dev_id: 99 }));
    fails('ENOENT', () => hw({ dev_id: new Cdev(host, 3).bind(io.fd) })); // an mdev binds as an access
  });
});

describe('IOMMU_HWPT_SET_DIRTY_TRACKING', () => {
  it('is EOPNOTSUPP for a HWPT not allocated for dirty tracking, enabling or not (realhost)', () => {
    const { io, ioas, devid } = setup();
    const hwpt = io.hwptAlloc(devid, ioas);
    fails('EOPNOTSUPP', () => io.setDirty(hwpt, true));
    fails('EOPNOTSUPP', () => io.setDirty(hwpt, false));
    fails('ENOENT', () => io.setDirty(ioas, true));
    fails('EOPNOTSUPP', () => call(io.host, io.fd, IOMMU_HWPT_SET_DIRTY_TRACKING, iommu_hwpt_set_dirty_tracking, { hwpt_id: hwpt, flags: 2 }));
  });

  it('toggles idempotently, counted in the census; enabling starts from a clean snapshot', () => {
    const { io, host, hwpt, read } = tracking();
    io.setDirty(hwpt, true);
    expect(host.census().objects.iommu_dirty_tracking).toBe(1);
    host.deviceDma(DEV, 0x101000n, new Uint8Array(8));
    io.setDirty(hwpt, false);
    io.setDirty(hwpt, false);
    expect(host.census().objects.iommu_dirty_tracking).toBeUndefined();
    host.deviceDma(DEV, 0x102000n, new Uint8Array(8)); // not tracked
    io.setDirty(hwpt, true);
    expect(read()).toEqual([]);
  });
});

describe('IOMMU_HWPT_GET_DIRTY_BITMAP', () => {
  it('reports the IO pages devices wrote, clearing them unless NO_CLEAR', () => {
    const { host, read } = tracking();
    host.deviceDma(DEV, 0x101ff0n, new Uint8Array(0x20)); // crosses into page 2
    host.deviceDma(DEV, 0x13f000n, new Uint8Array(1));
    expect(read(0x100000n, 64n * PAGE, PAGE, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR)).toEqual([1, 2, 63]);
    expect(read()).toEqual([1, 2, 63]);
    expect(read()).toEqual([]);
  });

  it('ORs into the bitmap at any byte alignment and any page_size multiple', () => {
    const { host, io, hwpt, bitmap, read } = tracking();
    host.deviceDma(DEV, 0x105000n, new Uint8Array(4));
    expect(read(0x100000n, 64n * PAGE, PAGE, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, 3n)).toEqual([5]);
    expect(read(0x100000n, 64n * PAGE, 2n * PAGE, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR)).toEqual([2]);
    bitmap.bytes.fill(0);
    bitmap.bytes[0] = 0x01;
    io.getDirty(hwpt, 0x100000n, 64n * PAGE, PAGE, bitmap.addr);
    expect(setBits(bitmap.bytes, 64)).toEqual([0, 5]);
  });

  it('checks flags, alignment and overflow', () => {
    const { io, host, hwpt, bitmap, ioas, devid } = tracking();
    const get = (v: object) => call(host, io.fd, IOMMU_HWPT_GET_DIRTY_BITMAP, iommu_hwpt_get_dirty_bitmap, {
      hwpt_id: hwpt, iova: 0x100000n, length: 64n * PAGE, page_size: PAGE, data: bitmap.addr, ...v,
    });
    fails('EOPNOTSUPP', () => get({ flags: 2 }));
    fails('EOPNOTSUPP', () => get({ __reserved: 1 }));
    fails('ENOENT', () => get({ hwpt_id: ioas }));
    fails('EINVAL', () => get({ iova: 0x100800n }));
    fails('EINVAL', () => get({ length: 0x800n }));
    fails('EINVAL', () => get({ page_size: 0n }));
    fails('EINVAL', () => get({ page_size: 8n * PAGE, iova: 0x101000n }));
    fails('EOVERFLOW', () => get({ iova: 0xffff_ffff_ffff_f000n, length: 0x2000n }));
    fails('EOPNOTSUPP', () => get({ hwpt_id: io.hwptAlloc(devid, ioas) }));
  });

  it('fails where the range has a hole or tracking is off (6.12 stable returns what the walk met)', () => {
    const { io, host, hwpt, read } = tracking();
    host.deviceDma(DEV, 0x100000n, new Uint8Array(4));
    host.deviceDma(DEV, 0x13f000n, new Uint8Array(4));
    fails('EINVAL', () => read(0x100000n, 128n * PAGE, PAGE, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR));
    fails('EINVAL', () => read(0xf0000n, 128n * PAGE, PAGE, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR));
    expect(read(0x100000n, 64n * PAGE, PAGE, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR)).toEqual([0, 63]);
    io.setDirty(hwpt, false);
    fails('EINVAL', () => read());
  });

  it('on 7.2 succeeds anyway, reporting what it reached and the bits set while tracking was on', () => {
    const { io, host, hwpt, read } = tracking({ ...MACHINE, kernel: '7.2' });
    host.deviceDma(DEV, 0x100000n, new Uint8Array(4));
    host.deviceDma(DEV, 0x13f000n, new Uint8Array(4));
    expect(read(0x100000n, 128n * PAGE, PAGE, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR)).toEqual([0, 63]);
    expect(read(0xf0000n, 128n * PAGE, PAGE, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR)).toEqual([]);
    io.setDirty(hwpt, false);
    expect(read()).toEqual([0, 63]);
    expect(read()).toEqual([]);
  });

  it('loses the bits it reads through a bitmap it cannot write (the IOPTEs are cleared all the same)', () => {
    const { io, host, hwpt, read } = tracking();
    host.deviceDma(DEV, 0x103000n, new Uint8Array(4));
    io.getDirty(hwpt, 0x100000n, 64n * PAGE, PAGE, 0x10n);
    expect(read()).toEqual([]);
  });

  it('drops the dirty bits of unmapped IOVA: harvest before unmap', () => {
    const { io, host, ioas, buf, read } = tracking();
    host.deviceDma(DEV, 0x104000n, new Uint8Array(4));
    io.unmap(ioas, 0x100000n, 64n * PAGE);
    io.map(ioas, buf.addr, 64n * PAGE, 0x100000n);
    expect(read()).toEqual([]);
  });

  it('reports a whole huge IOPTE when a device dirties any of it, unless large pages are off', () => {
    // Huge IOPTEs need physically contiguous (huge-page backed) memory.
    const io = new Iommufd(machine({ ...MACHINE, transparentHugePages: true }));
    const region = anon(io.host, 2n * MB2); // the first mapping of the host: 2 MiB aligned
    expect(region.addr % MB2).toBe(0n);
    const run = (hugePages: boolean): number[] => {
      const ioas = io.ioasAlloc();
      if (!hugePages) call(io.host, io.fd, IOMMU_OPTION, iommu_option, { option_id: IOMMU_OPTION_HUGE_PAGES, op: IOMMU_OPTION_OP_SET, object_id: ioas, val64: 0n });
      io.map(ioas, region.addr, 2n * MB2, 0x4000_0000n);
      const dev = new Cdev(io.host, 0);
      const hwpt = io.hwptAlloc(dev.bind(io.fd), ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
      dev.attach(hwpt);
      io.setDirty(hwpt, true);
      busMaster(io.host, DEV);
      io.host.deviceDma(DEV, 0x4020_1000n, new Uint8Array(4)); // in the second 2 MiB block
      const bits = anon(io.host, 1024);
      io.getDirty(hwpt, 0x4000_0000n, 2n * MB2, PAGE, bits.addr);
      dev.close();
      return setBits(bits.bytes, 1024);
    };
    const huge = run(true);
    expect(huge.length).toBe(512);
    expect(huge[0]).toBe(512);
    expect(run(false)).toEqual([513]);
  });
});

describe('mdev devices bind as accesses', () => {
  it('attach to an IOAS only (a HWPT id is ENOENT) and DMA through its areas', () => {
    const { io, host, ioas, buf } = setup();
    const mdev = new Cdev(host, 3);
    const id = mdev.bind(io.fd);
    expect(host.census().objects.access).toBe(1);
    const hwpt = io.hwptAlloc(new Cdev(host, 1).bind(io.fd), ioas);
    fails('ENOENT', () => mdev.attach(hwpt));
    expect(mdev.attach(ioas)).toBe(ioas);
    busMaster(host, MDEV);
    host.deviceDma(MDEV, 0x100040n, new Uint8Array([7]));
    expect(buf.bytes[0x40]).toBe(7);
    fails('EBUSY', () => io.destroy(id));
    fails('EBUSY', () => io.destroy(ioas));
    mdev.detach();
    expect(() => host.deviceDma(MDEV, 0x100040n, new Uint8Array([7]))).toThrow(/not attached/);
    mdev.close();
    expect(host.census().objects.access).toBeUndefined();
  });
});

describe('scale', () => {
  it('reads the full dirty bitmap of a 1 TiB IOAS (32 MiB at 4 KiB pages)', () => {
    // An IOMMU with 512 GiB IOPTEs: two device writes dirty the whole terabyte, touching two bytes of memory.
    const host = machine({
      transparentHugePages: true,
      iommus: [{ id: 'big', dirtyTracking: true, awBits: 48, pageSizes: 0x4020_1000n | (1n << 39n) }],
      devices: [{ bdf: '0000:00:03.0', model: MACHINE_MODEL, group: 1 }],
    });
    const tib = anon(host, 1n << 40n); // the host's first mapping: 512 GiB aligned
    const io = new Iommufd(host);
    const ioas = io.ioasAlloc();
    io.map(ioas, tib.addr, 1n << 40n, 1n << 40n);
    const dev = new Cdev(host, 0);
    const hwpt = io.hwptAlloc(dev.bind(io.fd), ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
    dev.attach(hwpt);
    io.setDirty(hwpt, true);
    busMaster(host, DEV);
    host.deviceDma(DEV, (1n << 40n) + 8n, new Uint8Array(1));
    host.deviceDma(DEV, (1n << 40n) + (1n << 39n) + 8n, new Uint8Array(1));
    const bitmap = anon(host, 32n << 20n);
    io.getDirty(hwpt, 1n << 40n, 1n << 40n, PAGE, bitmap.addr);
    expect(allBytes(bitmap.bytes, 0xff)).toBe(true);
    bitmap.bytes.fill(0);
    io.getDirty(hwpt, 1n << 40n, 1n << 40n, PAGE, bitmap.addr);
    expect(allBytes(bitmap.bytes, 0)).toBe(true);
  });
});

/** Every byte equals `value` (word-wise, for 32 MiB bitmaps). */
function allBytes(bytes: Uint8Array, value: number): boolean {
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const word = (value * 0x01010101) >>> 0;
  for (let i = 0; i < words.length; i++) if (words[i] !== word) return false;
  return true;
}

import { plainModel as MACHINE_MODEL } from './plain-model.js';
