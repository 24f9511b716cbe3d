// /dev/iommu's ioctl rules (iommufd_fops_ioctl): extensible-struct sizes, unknown numbers, the
// object table's ids, IOMMU_DESTROY and what closing the fd releases. On SimHost and, in the
// kernel tier, on the real kernel (the cases that bind a device use one of its edu devices).

import { describe, expect, it } from 'vitest';
import { type HostKernel } from '@vmmkit/core';
import {
  _IOWR, IOMMU_DESTROY, IOMMU_GET_HW_INFO, IOMMU_IOAS_ALLOC, IOMMU_IOAS_MAP, IOMMU_TEST_CMD, IOMMUFD_TYPE,
  iommu_destroy, iommu_hw_info, iommu_ioas_alloc, iommu_ioas_map, iommu_test_cmd, O_RDWR, u32,
} from '@vmmkit/core/uapi';
import { SimHost } from '../src/index.js';
import { anon, call, Cdev, fails, Iommufd, MACHINE, machine, PAGE, RW } from './iommufd-helpers.js';
import { iommufdTargets, isSim, onTarget, pciCdev, type HostTarget } from './host-targets.js';

/** A raw argument: `size` declared, `bytes` long, with an optional non-zero byte at `dirtyAt`. */
function raw(size: number, bytes: number, dirtyAt?: number): Uint8Array {
  const b = new Uint8Array(bytes);
  u32.write(new DataView(b.buffer), 0, size);
  if (dirtyAt !== undefined) b[dirtyAt] = 1;
  return b;
}

/** The cases every host with /dev/iommu runs; `target.host()` is a fresh SimHost or the real kernel. */
function describeUcmd(target: HostTarget): void {
  const cdev = pciCdev(target);
  /** A case that binds the host's PCI device; skipped, with the reason, where there is none. */
  const withDevice = (title: string, fn: () => void): void =>
    it.skipIf(cdev.index === undefined)(cdev.unavailable ? `${title} (skipped: ${cdev.unavailable})` : title, fn);
  /** An iommufd on a fresh host (on SimHost, the standard machine); each case closes it. */
  const open = (): Iommufd<HostKernel> => new Iommufd(target.host(MACHINE));

  describe.skipIf(target.unavailable !== undefined)(onTarget('iommufd ioctl struct rules', target), () => {
    it('accepts the exact size, a shorter size down to the last required member, and a zero tail', () => {
      const io = open();
      expect(call(io.host, io.fd, IOMMU_IOAS_ALLOC, iommu_ioas_alloc).out_ioas_id).toBe(1);
      // A bigger struct from newer headers: zero bytes past the kernel's 12 are fine.
      const bigger = raw(32, 32);
      io.host.ioctl(io.fd, IOMMU_IOAS_ALLOC, bigger);
      expect(iommu_ioas_alloc.get(bigger, 'out_ioas_id')).toBe(2);
      expect([...bigger.subarray(12)].every((b) => b === 0)).toBe(true);
      io.close();
    });

    it('is EINVAL below the last required member and E2BIG for non-zero bytes past the struct', () => {
      const io = open();
      fails('EINVAL', () => io.host.ioctl(io.fd, IOMMU_IOAS_ALLOC, raw(8, 12)));
      fails('E2BIG', () => io.host.ioctl(io.fd, IOMMU_IOAS_ALLOC, raw(16, 16, 13)));
      fails('EINVAL', () => io.host.ioctl(io.fd, IOMMU_DESTROY, raw(4, 8)));
      if (isSim(io.host)) expect(io.host.census().objects.ioas).toBeUndefined();
      expect(io.ioasAlloc()).toBe(1); // the failed calls made nothing
      io.close();
    });

    it('faults where the declared size runs past the buffer, and on a NULL pointer', () => {
      const io = open();
      // Past the buffer: SimHost sees the end of the Uint8Array; on Linux the bytes after a small
      // buffer are usually readable, so only the NULL pointer is certain to fault there.
      if (isSim(io.host)) fails('EFAULT', () => io.host.ioctl(io.fd, IOMMU_IOAS_ALLOC, raw(64, 12)));
      if (isSim(io.host)) fails('EFAULT', () => io.host.ioctl(io.fd, IOMMU_IOAS_ALLOC, new Uint8Array(2)));
      fails('EFAULT', () => io.host.ioctl(io.fd, IOMMU_IOAS_ALLOC, 0));
      io.close();
    });

    withDevice('copies back only the size the caller declared', () => {
      const io = open();
      const dev = new Cdev(io.host, cdev.index!);
      const devid = dev.bind(io.fd);
      // GET_HW_INFO needs 32 bytes (to __reserved); declared so, out_capabilities (bytes 32..39) stays untouched.
      const b = iommu_hw_info.encode({ size: 32, dev_id: devid });
      b.fill(0xee, 32);
      io.host.ioctl(io.fd, IOMMU_GET_HW_INFO, b);
      expect(iommu_hw_info.get(b, 'data_len')).toBe(24);
      expect([...b.subarray(32)]).toEqual(new Array(8).fill(0xee));
      fails('EINVAL', () => io.host.ioctl(io.fd, IOMMU_GET_HW_INFO, iommu_hw_info.encode({ size: 31, dev_id: devid })));
      dev.close();
      io.close();
    });

    it('answers ENOTTY for an unknown number, another encoding of a known one, and routes VFIO numbers to the compat container', () => {
      const io = open();
      fails('ENOTTY', () => io.host.ioctl(io.fd, (IOMMUFD_TYPE << 8) | 0x9a, raw(8, 8)));
      fails('ENOTTY', () => io.host.ioctl(io.fd, _IOWR(IOMMUFD_TYPE, 0x81, 12), raw(12, 12)));
      fails('ENOTTY', () => io.host.ioctl(io.fd, (IOMMUFD_TYPE << 8) | 0x7f, 0));
      expect(io.host.ioctl(io.fd, (IOMMUFD_TYPE << 8) | 100)).toBe(0); // VFIO_GET_API_VERSION
      io.close();
    });
  });

  describe.skipIf(target.unavailable !== undefined)(onTarget('iommufd objects', target), () => {
    it('numbers objects from 1 in one table, reusing the lowest free id', () => {
      const io = open();
      expect([io.ioasAlloc(), io.ioasAlloc(), io.ioasAlloc()]).toEqual([1, 2, 3]);
      io.destroy(2);
      expect(io.ioasAlloc()).toBe(2);
      expect(io.ioasAlloc()).toBe(4);
      io.close();
    });

    withDevice('destroys: ENOENT for unknown ids, EBUSY while in use, never a bound device', () => {
      const io = open();
      const ioas = io.ioasAlloc();
      fails('ENOENT', () => io.destroy(77));
      const dev = new Cdev(io.host, cdev.index!);
      const devid = dev.bind(io.fd);
      const hwpt = dev.attach(ioas);
      fails('EBUSY', () => io.destroy(ioas));
      fails('EBUSY', () => io.destroy(hwpt));
      fails('EBUSY', () => io.destroy(devid));
      dev.detach();
      fails('ENOENT', () => io.destroy(hwpt)); // the automatic domain went with its device
      io.destroy(ioas);
      dev.close();
      if (isSim(io.host)) expect(io.host.census().objects).toEqual({});
      io.close();
    });

    it('checks IOMMU_DESTROY struct and leaves other objects alone', () => {
      const io = open();
      const a = io.ioasAlloc();
      const b = io.ioasAlloc();
      call(io.host, io.fd, IOMMU_DESTROY, iommu_destroy, { id: a });
      fails('ENOENT', () => call(io.host, io.fd, IOMMU_DESTROY, iommu_destroy, { id: a }));
      expect(io.ranges(b)).toEqual([{ start: 0n, last: 0xffff_ffff_ffff_ffffn }]);
      const buf = anon(io.host, PAGE);
      call(io.host, io.fd, IOMMU_IOAS_MAP, iommu_ioas_map, { ioas_id: b, user_va: buf.addr, length: PAGE, flags: RW });
      io.close();
      buf.unmap();
    });
  });
}

for (const target of iommufdTargets()) describeUcmd(target);

describe('iommufd on SimHost only', () => {
  it('has no IOMMU_TEST_CMD without CONFIG_IOMMUFD_TEST', () => {
    const host = new SimHost({ features: { selftest: false } });
    const fd = host.open('/dev/iommu', O_RDWR);
    fails('ENOTTY', () => host.ioctl(fd, IOMMU_TEST_CMD, iommu_test_cmd.encode({ op: 2 })));
  });

  it('keeps the iommufd open while a device is bound, and releases everything when the last user goes', () => {
    const host = machine();
    const io = new Iommufd(host);
    const ioas = io.ioasAlloc();
    const buf = anon(host, 16n * PAGE);
    io.map(ioas, buf.addr, 16n * PAGE, 0x100000n);
    const dev = new Cdev(host, 0);
    dev.bind(io.fd);
    dev.attach(ioas);
    io.close();
    expect(host.census().objects).toMatchObject({ ioas: 1, hwpt: 1, device_bind: 1 });
    dev.close();
    buf.unmap();
    expect(host.census()).toEqual({ fds: 0, objects: {} });
  });

});
