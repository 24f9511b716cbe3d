// The simulated kernel's infrastructure: address space, backings, intervals, sparse bitmaps,
// files, fds, paths and the census.

import { describe, expect, it } from 'vitest';
import { HostError } from '@vmmkit/core';
import {
  EFD_NONBLOCK, MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, O_RDONLY, O_RDWR, PROT_READ, PROT_WRITE,
} from '@vmmkit/core/uapi';
import { SimHost } from '../src/index.js';
import { ChunkedBacking } from '../src/memory/backing.js';
import { RangeMap } from '../src/kernel/range-map.js';
import { SparseBitmap, setUserBits } from '../src/iommu/sparse-bitmap.js';
import { plainModel } from './plain-model.js';

const anon = (host: SimHost, length: number, prot = PROT_READ | PROT_WRITE) =>
  host.mmap(length, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);

describe('RangeMap', () => {
  it('keeps intervals sorted, finds, reports overlaps and coverage, refuses overlap', () => {
    const m = new RangeMap<string>();
    m.insert(0x3000n, 0x3fffn, 'c');
    const a = m.insert(0x1000n, 0x1fffn, 'a');
    m.insert(0x2000n, 0x2fffn, 'b');
    expect([...m].map((r) => r.value)).toEqual(['a', 'b', 'c']);
    expect(m.find(0x2800n)?.value).toBe('b');
    expect(m.find(0x4000n)).toBeUndefined();
    expect(m.overlapping(0x1800n, 0x3000n).map((r) => r.value)).toEqual(['a', 'b', 'c']);
    expect(m.covers(0x1000n, 0x3fffn)).toBe(true);
    expect(() => m.insert(0x3fffn, 0x4fffn, 'd')).toThrow(/overlaps/);
    m.delete(a);
    expect(m.covers(0x1000n, 0x2fffn)).toBe(false);
    expect(m.size).toBe(2);
  });
});

describe('SparseBitmap', () => {
  it('sets, clears and reports runs across words and chunks', () => {
    const b = new SparseBitmap();
    b.setRange(30, 40); // crosses a word boundary
    b.setRange((1 << 18) - 3, 6); // crosses a chunk boundary
    const runs: [number, number][] = [];
    b.forEachRun(0, 1 << 20, (s, n) => runs.push([s, n]));
    expect(runs).toEqual([[30, 40], [(1 << 18) - 3, 6]]);
    expect(b.count(0, 1 << 20)).toBe(46);
    b.clearRange(32, 4);
    expect(b.test(31)).toBe(true);
    expect(b.test(33)).toBe(false);
    expect(b.count(0, 64)).toBe(30); // bits 30..63 less the four cleared
    b.clearRange(0, 1 << 20);
    expect(b.empty).toBe(true);
  });

  it('reports runs only inside the window asked for', () => {
    const b = new SparseBitmap();
    b.setRange(0, 256);
    const runs: [number, number][] = [];
    b.forEachRun(40, 100, (s, n) => runs.push([s, n]));
    expect(runs).toEqual([[40, 100]]);
  });

  it('walks a terabyte of dirty 4 KiB pages as one run', () => {
    const b = new SparseBitmap();
    b.setRange(0, 1 << 28);
    let runs = 0;
    b.forEachRun(0, 1 << 28, () => runs++);
    expect(runs).toBe(1);
  });

  it('ORs bits into a user bitmap split across views at any alignment', () => {
    const a = new Uint8Array(3);
    const c = new Uint8Array(3);
    a[0] = 0x01;
    setUserBits([a, c], 3, 30);
    expect([...a, ...c]).toEqual([0xf9, 0xff, 0xff, 0xff, 0x01, 0x00]); // bits 3..32
  });
});

describe('ChunkedBacking', () => {
  it('allocates only the chunks written, and reads untouched memory as zero', () => {
    const b = new ChunkedBacking(2 ** 40);
    const at = 2 ** 39 + ChunkedBacking.CHUNK - 2;
    b.write(at, new Uint8Array([1, 2, 3, 4]));
    expect(b.allocatedChunks).toBe(2);
    const out = new Uint8Array(6);
    b.read(at - 1, out);
    expect([...out]).toEqual([0, 1, 2, 3, 4, 0]);
    expect(() => b.view(at, 4)).toThrow(/crosses a 1 GiB backing chunk/);
  });
});

describe('SimHost basics', () => {
  it('hands out the lowest free fd from 3, and EBADF for a closed one', () => {
    const host = new SimHost();
    const a = host.open('/dev/null', O_RDWR);
    const b = host.open('/dev/null', O_RDWR);
    expect([a, b]).toEqual([3, 4]);
    host.close(a);
    expect(host.open('/dev/null', O_RDWR)).toBe(3);
    expect(() => host.close(a + 10)).toThrow(`close(fd ${a + 10}) failed: EBADF`);
    expect(() => host.ioctl(99, 0x3b64)).toThrow('ioctl(fd 99, VFIO_GET_API_VERSION) failed: EBADF');
  });

  it('answers ENOENT for a missing path and ENOTTY for an unknown ioctl, as Linux does', () => {
    const host = new SimHost({ features: { iommufd: false } });
    expect(() => host.open('/dev/iommu', O_RDWR)).toThrow("open('/dev/iommu') failed: ENOENT");
    const fd = host.open('/dev/null', O_RDWR);
    expect(() => host.ioctl(fd, 0x1234)).toThrow(`ioctl(fd ${fd}, request 0x1234) failed: ENOTTY`);
  });

  it('maps anonymous memory that reads back, refuses bad mmap arguments, and counts mappings', () => {
    const host = new SimHost();
    const m = anon(host, 10000);
    m.bytes[9999] = 7;
    expect(m.view(9990, 10)[9]).toBe(7);
    expect(m.addr % 4096n).toBe(0n);
    expect(host.census().objects.mapping).toBe(1);
    expect(() => host.mmap(4096, PROT_READ, MAP_ANONYMOUS, -1, 0n)).toThrow(/mmap\(\) failed: EINVAL/);
    expect(() => host.mmap(0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n)).toThrow(/EINVAL/);
    m.unmap();
    expect(host.census().objects.mapping).toBeUndefined();
    expect(() => m.bytes).toThrow(/was unmapped/);
  });

  it('maps a terabyte with MAP_NORESERVE lazily, with windows past 4 GiB', () => {
    const host = new SimHost();
    const m = host.mmap(2 ** 40, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0n);
    expect(() => m.bytes).toThrow(/4 GiB/);
    m.view(2 ** 39, 8)[0] = 9;
    expect(m.view(2 ** 39, 1)[0]).toBe(9);
    m.unmap();
  });

  it('counts with eventfds like eventfd(2)', () => {
    const host = new SimHost();
    const efd = host.eventfd(3, EFD_NONBLOCK);
    const buf = new Uint8Array(8);
    new DataView(buf.buffer).setBigUint64(0, 4n, true);
    host.write(efd, buf);
    expect(host.read(efd, buf)).toBe(8);
    expect(new DataView(buf.buffer).getBigUint64(0, true)).toBe(7n);
    expect(() => host.read(efd, buf)).toThrow(expect.objectContaining({ errno: 'EAGAIN', syscall: 'read' }));
    expect(() => host.read(efd, new Uint8Array(4))).toThrow(/EINVAL/);
    expect(host.census().objects.eventfd).toBe(1);
    host.close(efd);
    expect(host.census()).toEqual({ fds: 0, objects: {} });
  });

  it('reports an eventfd becoming readable from the event loop, and refuses to watch other files', async () => {
    const host = new SimHost();
    const efd = host.eventfd(0, EFD_NONBLOCK);
    let fired = 0;
    const stop = host.watch(efd, () => {
      fired++;
      host.read(efd, new Uint8Array(8));
    });
    const one = new Uint8Array(8);
    one[0] = 1;
    host.write(efd, one);
    expect(fired).toBe(0); // never inside the signal itself
    await new Promise((resolve) => setImmediate(resolve));
    expect(fired).toBe(1);
    stop();
    host.write(efd, one);
    await new Promise((resolve) => setImmediate(resolve));
    expect(fired).toBe(1);
    const fd = host.open('/dev/null', O_RDWR);
    expect(() => host.watch(fd, () => {})).toThrow(/epoll_ctl\(fd \d+\) failed: EPERM/);
  });

  it('lays out /dev and sysfs as Linux does for vfio-bound devices and mdevs', () => {
    const host = new SimHost({
      devices: [
        { bdf: '0000:00:03.0', model: plainModel, group: 7 },
        { bdf: '0000:00:04.0', model: plainModel, group: 7, driver: 'host' },
        { uuid: '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001', model: plainModel },
      ],
    });
    expect(host.readlink('/sys/bus/pci/devices/0000:00:03.0/iommu_group')).toBe('../../../kernel/iommu_groups/7');
    expect(host.readdir('/sys/kernel/iommu_groups/7/devices')).toEqual(['0000:00:03.0', '0000:00:04.0']);
    expect(host.readdir('/sys/bus/pci/devices/0000:00:03.0/vfio-dev')).toEqual(['vfio0']);
    expect(host.exists('/sys/bus/pci/devices/0000:00:04.0/vfio-dev')).toBe(false);
    expect(host.readdir('/sys/bus/pci/drivers/vfio-pci')).toEqual(['0000:00:03.0']);
    expect(host.readlink('/sys/bus/pci/drivers/vfio-pci/0000:00:03.0')).toBe('../../../../devices/pci0000:00/0000:00:03.0');
    expect(host.exists('/dev/vfio/7')).toBe(true);
    expect(host.exists('/dev/vfio/devices/vfio0')).toBe(true);
    expect(host.exists('/dev/vfio/devices/vfio1')).toBe(true); // the mdev
    const mdev = '/sys/bus/mdev/devices/83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';
    expect(host.readlink(`${mdev}/subsystem`)).toBe('../../../../bus/mdev');
    expect(host.readdir(`${mdev}/vfio-dev`)).toEqual(['vfio1']);
    expect(host.readlink(`${mdev}/iommu_group`)).toMatch(/iommu_groups\/0$/);
    const fd = host.open('/sys/bus/pci/devices/0000:00:03.0/vendor', O_RDONLY);
    const buf = new Uint8Array(16);
    expect(new TextDecoder().decode(buf.subarray(0, host.read(fd, buf)))).toBe('0x1234\n');
    host.close(fd);
    expect(() => host.readlink('/sys/bus/pci/devices/0000:00:03.0/vendor')).toThrow(HostError);
  });

  it('refuses a bad machine description with a message that names the problem', () => {
    expect(() => new SimHost({ devices: [{ bdf: '00:03.0', model: plainModel }] })).toThrow(/bdf '00:03.0' is not DDDD:BB:DD.F/);
    expect(() => new SimHost({ devices: [{ bdf: '0000:00:03.0', model: 'toaster' }] })).toThrow(/unknown device model 'toaster'/);
    expect(() => new SimHost({ devices: [{ bdf: '0000:00:03.0', model: plainModel, iommu: 'nope' }] })).toThrow(/unknown iommu 'nope'/);
    expect(() => new SimHost({ iommus: [{ id: 'a', awBits: 99 }] })).toThrow(/awBits must be 12..64/);
  });
});
