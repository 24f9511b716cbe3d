// The VFIO device cdev's iommufd ioctls (drivers/vfio/device_cdev.c, vfio_main.c, iommufd.c):
// VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_DETACH_IOMMUFD_PT, the
// close that unbinds, and the exclusion between cdev and group opens.

import { describe, expect, it } from 'vitest';
import {
  EFD_CLOEXEC, O_RDWR, VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_DETACH_IOMMUFD_PT,
  VFIO_DEVICE_GET_INFO, vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd, vfio_device_detach_iommufd_pt,
  vfio_device_info,
} from '@vmmkit/core/uapi';
import { SimDmaFault } from '../src/index.js';
import {
  anon, busMaster, call, Cdev, fails, groupDeviceFd, Iommufd, Legacy, machine, MDEV, PAGE,
} from './iommufd-helpers.js';
import { plainModel } from './plain-model.js';

const DEV0 = '0000:00:03.0';
const IOVA = 0x100000n;

/** An iommufd with an IOAS mapping 16 pages at IOVA, and the cdev of 0000:00:03.0 open. */
function setup() {
  const io = new Iommufd(machine());
  const ioas = io.ioasAlloc();
  const buf = anon(io.host, 16n * PAGE);
  io.map(ioas, buf.addr, 16n * PAGE, IOVA);
  const dev = new Cdev(io.host, 0);
  return { io, host: io.host, ioas, buf, dev };
}

describe('VFIO_DEVICE_BIND_IOMMUFD', () => {
  it('binds once and returns the device id', () => {
    const { io, host, dev } = setup();
    const devid = dev.bind(io.fd);
    expect(devid).toBe(2); // the IOAS is object 1
    expect(host.census().objects.device_bind).toBe(1);
    fails('EINVAL', () => dev.bind(io.fd));
    expect(host.census().objects.device_bind).toBe(1);
  });

  it('checks argsz, flags and the fd: EINVAL, EBADF for a closed fd, EBADFD for a file that is no iommufd', () => {
    const { io, host, dev } = setup();
    const raw = (v: object) => call(host, dev.fd, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, { iommufd: io.fd, ...v });
    fails('EINVAL', () => raw({ argsz: 8 }));
    fails('EINVAL', () => raw({ flags: 1 }));
    fails('EINVAL', () => raw({ iommufd: -1 }));
    fails('EBADF', () => raw({ iommufd: 999 }));
    fails('EBADFD', () => raw({ iommufd: host.eventfd(0, EFD_CLOEXEC) }));
    fails('EBADFD', () => raw({ iommufd: new Legacy(host).container }));
    expect(host.census().objects.device_bind).toBeUndefined();
    raw({});
  });

  it('gates the device: ioctls before the bind are EINVAL, after it they work', () => {
    const { io, host, dev } = setup();
    const info = () => call(host, dev.fd, VFIO_DEVICE_GET_INFO, vfio_device_info);
    fails('EINVAL', info);
    fails('EINVAL', () => dev.attach(1));
    fails('EINVAL', () => dev.detach());
    dev.bind(io.fd);
    expect(info().num_regions).toBeGreaterThan(0);
  });

  it('binds a device to one fd at a time: a second cdev fd of it cannot bind (EINVAL)', () => {
    const { io, host, dev } = setup();
    const again = new Cdev(host, 0);
    dev.bind(io.fd);
    fails('EINVAL', () => again.bind(io.fd));
    dev.close();
    again.bind(io.fd);
  });

  it('is EPERM when a host driver owns another device of the IOMMU group', () => {
    const host = machine({
      iommus: [{ id: 'iommu0' }],
      devices: [
        { bdf: '0000:00:03.0', model: plainModel, group: 7 },
        { bdf: '0000:00:03.1', model: plainModel, group: 7, driver: 'host' },
      ],
    });
    const io = new Iommufd(host);
    fails('EPERM', () => new Cdev(host, 0).bind(io.fd));
    expect(host.census().objects.device_bind).toBeUndefined();
  });
});

describe('cdev and group exclusion', () => {
  it('a bound cdev makes the group un-openable (EBUSY), until the cdev closes', () => {
    const { io, host, dev } = setup();
    host.close(host.open('/dev/vfio/4', O_RDWR)); // other groups are fine
    dev.bind(io.fd);
    fails('EBUSY', () => host.open('/dev/vfio/3', O_RDWR));
    dev.close();
    host.close(host.open('/dev/vfio/3', O_RDWR));
  });

  it('an open group makes its devices un-bindable through the cdev (EBUSY at bind, not at open)', () => {
    const { io, host, dev } = setup();
    const group = host.open('/dev/vfio/3', O_RDWR);
    fails('EBUSY', () => dev.bind(io.fd));
    host.close(group);
    dev.bind(io.fd);
  });

  it('a device opened through its group cannot also be bound through its cdev', () => {
    const { io, host, dev } = setup();
    const legacy = new Legacy(host);
    const group = legacy.group(3);
    legacy.setIommu();
    const devFd = groupDeviceFd(host, group, DEV0);
    fails('EBUSY', () => dev.bind(io.fd));
    // A group-opened fd has no cdev ioctls: BIND is EINVAL, ATTACH/DETACH are the driver's ENOTTY.
    fails('EINVAL', () => call(host, devFd, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, { iommufd: io.fd }));
    fails('ENOTTY', () => call(host, devFd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, vfio_device_attach_iommufd_pt, { pt_id: 1 }));
    fails('ENOTTY', () => call(host, devFd, VFIO_DEVICE_DETACH_IOMMUFD_PT, vfio_device_detach_iommufd_pt));
  });
});

describe('VFIO_DEVICE_ATTACH_IOMMUFD_PT and DETACH', () => {
  it('attaching to an IOAS allocates an auto HWPT, shared by devices of the same IOMMU unit', () => {
    const { io, host, ioas, dev } = setup();
    dev.bind(io.fd);
    const hwpt = dev.attach(ioas);
    expect(hwpt).not.toBe(ioas);
    const dev1 = new Cdev(host, 1); // 0000:00:04.0, same unit
    dev1.bind(io.fd);
    expect(dev1.attach(ioas)).toBe(hwpt);
    const dev2 = new Cdev(host, 2); // 0000:00:05.0, another unit: its own auto HWPT
    dev2.bind(io.fd);
    expect(dev2.attach(ioas)).not.toBe(hwpt);
    expect(host.census().objects.hwpt).toBe(2);
    fails('EBUSY', () => io.destroy(hwpt));
    fails('EBUSY', () => io.destroy(ioas));
  });

  it('auto HWPTs go with their last device; user HWPTs stay', () => {
    const { io, host, ioas, dev } = setup();
    const devid = dev.bind(io.fd);
    const auto = dev.attach(ioas);
    const user = io.hwptAlloc(devid, ioas);
    expect(dev.attach(user)).toBe(user); // replace
    expect(host.census().objects.hwpt).toBe(1);
    fails('ENOENT', () => io.destroy(auto));
    dev.detach();
    dev.detach(); // detaching a detached device is fine
    expect(host.census().objects.hwpt).toBe(1);
    io.destroy(user);
  });

  it('replaces an attachment: another IOAS, with DMA following the new page table', () => {
    const { io, host, ioas, buf, dev } = setup();
    dev.bind(io.fd);
    busMaster(host, DEV0);
    dev.attach(ioas);
    host.deviceDma(DEV0, IOVA, new Uint8Array([7]));
    expect(buf.bytes[0]).toBe(7);
    const ioas2 = io.ioasAlloc();
    const other = anon(host, PAGE);
    io.map(ioas2, other.addr, PAGE, IOVA);
    dev.attach(ioas2);
    host.deviceDma(DEV0, IOVA, new Uint8Array([9]));
    expect([buf.bytes[0], other.bytes[0]]).toEqual([7, 9]);
    expect(() => host.deviceDma(DEV0, IOVA + PAGE, new Uint8Array(1))).toThrow(SimDmaFault);
    dev.detach();
    expect(() => host.deviceDma(DEV0, IOVA, new Uint8Array(1))).toThrow(SimDmaFault);
  });

  it('checks its arguments: ENOENT for unknown ids, EINVAL for a non-page-table object, argsz and flags', () => {
    const { io, host, dev } = setup();
    const devid = dev.bind(io.fd);
    fails('ENOENT', () => dev.attach(99));
    fails('EINVAL', () => dev.attach(devid));
    const raw = (v: object) => call(host, dev.fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, vfio_device_attach_iommufd_pt, { pt_id: 1, ...v });
    fails('EINVAL', () => raw({ argsz: 8 }));
    fails('EINVAL', () => raw({ flags: 1 }));
    fails('EINVAL', () => call(host, dev.fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, vfio_device_detach_iommufd_pt, { flags: 1 }));
    expect(host.census().objects.hwpt).toBeUndefined();
  });

  it('refuses a HWPT of another IOMMU unit (EINVAL) and leaves the old attachment in place', () => {
    const { io, host, ioas, buf, dev } = setup();
    dev.bind(io.fd);
    dev.attach(ioas);
    const dev2 = new Cdev(host, 2);
    const devid2 = dev2.bind(io.fd);
    const foreign = io.hwptAlloc(devid2, ioas);
    fails('EINVAL', () => dev.attach(foreign));
    busMaster(host, DEV0);
    host.deviceDma(DEV0, IOVA + 1n, new Uint8Array([5]));
    expect(buf.bytes[1]).toBe(5);
  });
});

describe('closing the cdev', () => {
  it('detaches and unbinds: the auto HWPT goes, the IOAS can be destroyed, the group can open', () => {
    const { io, host, ioas, dev } = setup();
    dev.bind(io.fd);
    dev.attach(ioas);
    dev.close();
    const objects = host.census().objects;
    expect([objects.device_bind, objects.hwpt]).toEqual([undefined, undefined]);
    io.destroy(ioas);
    host.close(host.open('/dev/vfio/3', O_RDWR));
  });

  it('keeps the iommufd alive while a device is bound to it', () => {
    const { io, host, ioas, dev } = setup();
    dev.bind(io.fd);
    dev.attach(ioas);
    io.close();
    expect(host.census().objects.ioas).toBe(1);
    dev.close();
    expect(host.census().objects.ioas).toBeUndefined();
  });
});

describe('mdev cdevs', () => {
  it('bind as an access: ATTACH takes an IOAS (a HWPT id is ENOENT), no hw_info, DMA through the areas', () => {
    const { io, host, ioas, buf } = setup();
    const mdev = new Cdev(host, 3);
    const id = mdev.bind(io.fd);
    expect(host.census().objects.access).toBe(1);
    fails('ENOENT', () => io.hwInfo(id));
    const pci = new Cdev(host, 0);
    const hwpt = io.hwptAlloc(pci.bind(io.fd), ioas);
    fails('ENOENT', () => mdev.attach(hwpt));
    expect(mdev.attach(ioas)).toBe(ioas);
    busMaster(host, MDEV);
    host.deviceDma(MDEV, IOVA + 2n, new Uint8Array([3]));
    expect(buf.bytes[2]).toBe(3);
    mdev.close();
    expect(host.census().objects.access).toBeUndefined();
  });
});
