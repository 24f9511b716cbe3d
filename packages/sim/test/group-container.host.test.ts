// VFIO group files (drivers/vfio/group.c) with legacy containers (container.c): open rules,
// GET_STATUS, SET_CONTAINER / UNSET_CONTAINER, GET_DEVICE_FD, sharing a container between
// groups, and who keeps whom alive. The cases without device DMA run on SimHost and, in the kernel
// tier, on the real kernel with the groups of its two edu devices.

import { afterEach, describe, expect, it } from 'vitest';
import { type HostKernel } from '@vmmkit/core';
import {
  EFD_CLOEXEC, O_RDWR, VFIO_DMA_UNMAP_FLAG_ALL, VFIO_GROUP_FLAGS_CONTAINER_SET, VFIO_GROUP_FLAGS_VIABLE,
  VFIO_GROUP_GET_STATUS, VFIO_GROUP_UNSET_CONTAINER, VFIO_TYPE1v2_IOMMU, vfio_group_status,
} from '@vmmkit/core/uapi';
import { SimDmaFault } from '../src/index.js';
import {
  anon, busMaster, call, fails, groupDeviceFd, Legacy, MACHINE, machine, MDEV, PAGE, setContainer,
} from './iommufd-helpers.js';
import { plainModel } from './plain-model.js';
import { isSim, onTarget, pciGroup, type HostTarget, type1Targets } from './host-targets.js';

const DEV0 = '0000:00:03.0';
const DEV1 = '0000:00:04.0';
const IOVA = 0x100000n;

const status = (host: HostKernel, fd: number, argsz?: number) => call(host, fd, VFIO_GROUP_GET_STATUS, vfio_group_status, { argsz }).flags;
const unset = (host: HostKernel, fd: number) => host.ioctl(fd, VFIO_GROUP_UNSET_CONTAINER);

/** A machine with group 7 holding a vfio-pci device and a device of a host driver: not viable. */
function nonViable() {
  return machine({
    iommus: [{ id: 'iommu0' }],
    devices: [
      { bdf: '0000:00:03.0', model: plainModel, group: 7 },
      { bdf: '0000:00:03.1', model: plainModel, group: 7, driver: 'host' },
    ],
  });
}

/** The group cases without device DMA on one host: a fresh SimHost per case, or the real kernel. */
function describeGroups(target: HostTarget): void {
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const release of cleanup.splice(0).reverse()) release();
  });
  const groups = [pciGroup(target, 0), pciGroup(target, 1)];
  const names = target.name === 'SimHost' ? [DEV0, DEV1] : (process.env.VMMKIT_TEST_EDU_DEVICES ?? '').split(',').map((n) => n.trim());
  /** The path of the n-th device's group. */
  const path = (n: number): string => `/dev/vfio/${groups[n]!.group}`;
  /** Open a file (a group, /dev/vfio/vfio) or take an fd, and close it after the case. */
  const tracked = (host: HostKernel, fd: number): number => {
    cleanup.push(() => host.close(fd));
    return fd;
  };
  const fresh = (): { host: HostKernel; legacy: Legacy<HostKernel> } => {
    const host = target.host(MACHINE);
    const legacy = new Legacy(host, tracked(host, host.open('/dev/vfio/vfio', O_RDWR)));
    return { host, legacy };
  };
  const unavailable = target.unavailable ?? groups.find((g) => g.unavailable)?.unavailable;

  describe.skipIf(unavailable !== undefined)(onTarget('VFIO groups and legacy containers', { ...target, unavailable }), () => {
    it('opens a group once (EBUSY), and again after the close', () => {
      const { host } = fresh();
      const fd = host.open(path(0), O_RDWR);
      fails('EBUSY', () => host.open(path(0), O_RDWR));
      host.close(host.open(path(1), O_RDWR));
      host.close(fd);
      host.close(host.open(path(0), O_RDWR));
    });

    it('GET_STATUS is VIABLE when free and VIABLE|CONTAINER_SET once set', () => {
      const { host, legacy } = fresh();
      const fd = tracked(host, host.open(path(0), O_RDWR));
      expect(status(host, fd)).toBe(VFIO_GROUP_FLAGS_VIABLE);
      setContainer(host, fd, legacy.container);
      expect(status(host, fd)).toBe(VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET);
      fails('EINVAL', () => status(host, fd, 4));
    });

    it('SET_CONTAINER checks the fd: EBADF when closed, EBADFD when neither a container nor an iommufd', () => {
      const { host } = fresh();
      const fd = tracked(host, host.open(path(0), O_RDWR));
      fails('EBADF', () => setContainer(host, fd, 999));
      fails('EBADFD', () => setContainer(host, fd, tracked(host, host.eventfd(0, EFD_CLOEXEC))));
      fails('EBADFD', () => setContainer(host, fd, fd));
      if (isSim(host)) expect(host.census().objects.group_attach).toBeUndefined();
    });

    it('SET_CONTAINER sets once (EINVAL for a second container or the same one)', () => {
      const { host, legacy } = fresh();
      const fd = tracked(host, legacy.group(groups[0]!.group!));
      fails('EINVAL', () => setContainer(host, fd, legacy.container));
      fails('EINVAL', () => setContainer(host, fd, tracked(host, host.open('/dev/vfio/vfio', O_RDWR))));
      if (isSim(host)) expect(host.census().objects.group_attach).toBe(1);
    });

    it('UNSET_CONTAINER is EINVAL when not set and EBUSY while a device fd is open', () => {
      const { host, legacy } = fresh();
      const fd = tracked(host, host.open(path(0), O_RDWR));
      fails('EINVAL', () => unset(host, fd));
      setContainer(host, fd, legacy.container);
      legacy.setIommu();
      const dev = groupDeviceFd(host, fd, names[0]!);
      fails('EBUSY', () => unset(host, fd));
      host.close(dev);
      unset(host, fd);
      expect(status(host, fd)).toBe(VFIO_GROUP_FLAGS_VIABLE);
    });

    it('the last group leaving releases the IOMMU: mappings go and SET_IOMMU is needed again', () => {
      const { host, legacy } = fresh();
      const fd = tracked(host, legacy.group(groups[0]!.group!));
      legacy.setIommu();
      const buf = anon(host, PAGE);
      cleanup.push(() => buf.unmap());
      legacy.map(buf.addr, IOVA, PAGE);
      if (isSim(host)) expect(host.census().objects.container).toBe(1);
      unset(host, fd);
      if (isSim(host)) expect(host.census().objects.container).toBeUndefined();
      fails('EINVAL', () => legacy.unmap(0n, 0n, VFIO_DMA_UNMAP_FLAG_ALL));
      setContainer(host, fd, legacy.container);
      legacy.setIommu();
      expect(legacy.unmap(0n, 0n, VFIO_DMA_UNMAP_FLAG_ALL)).toBe(0n);
    });

    it('GET_DEVICE_FD: ENODEV for an unknown name, EINVAL before SET_CONTAINER and before SET_IOMMU', () => {
      const { host, legacy } = fresh();
      const fd = tracked(host, host.open(path(0), O_RDWR));
      fails('EINVAL', () => groupDeviceFd(host, fd, names[0]!));
      setContainer(host, fd, legacy.container);
      fails('ENODEV', () => groupDeviceFd(host, fd, names[1]!)); // in another group
      fails('ENODEV', () => groupDeviceFd(host, fd, 'nonsense'));
      fails('EINVAL', () => groupDeviceFd(host, fd, names[0]!));
      legacy.setIommu();
      const a = tracked(host, groupDeviceFd(host, fd, names[0]!));
      const b = tracked(host, groupDeviceFd(host, fd, names[0]!)); // a group may open a device more than once
      expect(a).not.toBe(b);
    });

    it('a second group shares the container, attaching to the IOMMU already set', () => {
      const { host, legacy } = fresh();
      tracked(host, legacy.group(groups[0]!.group!));
      legacy.setIommu();
      const buf = anon(host, 4n * PAGE);
      cleanup.push(() => buf.unmap());
      legacy.map(buf.addr, IOVA, 4n * PAGE);
      tracked(host, legacy.group(groups[1]!.group!));
      if (isSim(host)) expect(host.census().objects.group_attach).toBe(2);
      expect(legacy.unmap(IOVA, 4n * PAGE)).toBe(4n * PAGE);
    });
  });
}

for (const target of type1Targets()) describeGroups(target);

describe('VFIO groups on SimHost only (device DMA, non-viable groups, mdevs, lifetimes)', () => {
  it('GET_STATUS is 0 when a host driver owns part of the group', () => {
    const host = nonViable();
    expect(status(host, host.open('/dev/vfio/7', O_RDWR))).toBe(0);
  });

  it('shares a container between groups; a group joining later attaches to the set IOMMU at once', () => {
    const host = machine();
    const legacy = new Legacy(host);
    const g3 = legacy.group(3);
    legacy.setIommu();
    const buf = anon(host, 4n * PAGE);
    legacy.map(buf.addr, IOVA, 4n * PAGE);
    const g4 = legacy.group(4);
    expect(host.census().objects.group_attach).toBe(2);
    const [d0, d1] = [groupDeviceFd(host, g3, DEV0), groupDeviceFd(host, g4, DEV1)];
    busMaster(host, DEV0);
    busMaster(host, DEV1);
    host.deviceDma(DEV0, IOVA, new Uint8Array([1]));
    host.deviceDma(DEV1, IOVA + 1n, new Uint8Array([2]));
    expect([...buf.bytes.subarray(0, 2)]).toEqual([1, 2]);
    host.close(d0);
    host.close(d1);
  });

  it('refuses (EINVAL) a group whose IOMMU aperture would leave a mapping outside the valid IOVA ranges', () => {
    const host = machine();
    const legacy = new Legacy(host);
    legacy.group(5); // 0000:00:05.0, behind the 48-bit IOMMU
    legacy.setIommu();
    legacy.map(anon(host, PAGE).addr, 1n << 40n, PAGE);
    const g3 = host.open('/dev/vfio/3', O_RDWR); // behind the 39-bit VT-d
    fails('EINVAL', () => setContainer(host, g3, legacy.container));
    expect(status(host, g3)).toBe(VFIO_GROUP_FLAGS_VIABLE);
    expect(host.census().objects.group_attach).toBe(1);
    legacy.unmap(1n << 40n, PAGE);
    setContainer(host, g3, legacy.container); // fine once nothing is mapped out of its reach
  });

  it('is EPERM for a group that is not viable', () => {
    const host = nonViable();
    const legacy = new Legacy(host);
    const fd = host.open('/dev/vfio/7', O_RDWR);
    fails('EPERM', () => setContainer(host, fd, legacy.container));
    fails('EINVAL', () => legacy.setIommu()); // still no group
  });

  it('a group leaving a shared container keeps the mappings for the others; its device DMA faults', () => {
    const host = machine();
    const legacy = new Legacy(host);
    const [g3, g4] = [legacy.group(3), legacy.group(4)];
    legacy.setIommu();
    legacy.map(anon(host, PAGE).addr, IOVA, PAGE);
    const d0 = groupDeviceFd(host, g3, DEV0);
    busMaster(host, DEV0);
    busMaster(host, DEV1);
    host.deviceDma(DEV1, IOVA, new Uint8Array(1));
    unset(host, g4);
    expect(() => host.deviceDma(DEV1, IOVA, new Uint8Array(1))).toThrow(SimDmaFault);
    host.deviceDma(DEV0, IOVA, new Uint8Array(1));
    expect(host.census().objects.container).toBe(1);
    expect(legacy.unmap(IOVA, PAGE)).toBe(PAGE);
    host.close(d0);
  });

  it('opens an mdev by its UUID', () => {
    const host = machine();
    const legacy = new Legacy(host);
    const fd = legacy.group(9);
    legacy.setIommu();
    const dev = groupDeviceFd(host, fd, MDEV);
    expect(dev).toBeGreaterThan(0);
    expect(host.census().objects.container).toBe(1);
  });

  it('the container outlives its fd while a group holds it, and the group while a device fd does', () => {
    const host = machine();
    const start = host.census();
    const legacy = new Legacy(host);
    const group = legacy.group(3);
    legacy.setIommu(VFIO_TYPE1v2_IOMMU);
    const buf = anon(host, PAGE);
    legacy.map(buf.addr, IOVA, PAGE);
    const dev = groupDeviceFd(host, group, DEV0);
    busMaster(host, DEV0);
    host.close(legacy.container);
    host.close(group);
    expect(host.census().objects.container).toBe(1);
    host.deviceDma(DEV0, IOVA, new Uint8Array([4])); // the mapping is still there
    expect(buf.bytes[0]).toBe(4);
    fails('EBUSY', () => host.open('/dev/vfio/3', O_RDWR)); // the group file is still open
    host.close(dev);
    expect(() => host.deviceDma(DEV0, IOVA, new Uint8Array(1))).toThrow(SimDmaFault);
    buf.unmap();
    expect(host.census()).toEqual(start);
    host.close(host.open('/dev/vfio/3', O_RDWR));
  });
});
