// What only the iommufd backend does: a passed /dev/iommu fd, a passed device fd, and mdevs on the IOAS.

import { afterEach, describe, expect, it } from 'vitest';
import { setBusMaster, VfioDevice } from '@vmmkit/core';
import { O_RDWR } from '@vmmkit/core/uapi';
import { contractMemory } from '@vmmkit/core/testing';
import { SimHost } from '@vmmkit/sim';
import { IommufdObject, IommufdIommuBackend, iommufdObjectType, type IommufdContainer } from '../src/index.js';

const MDEV = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';

describe('iommufd backend', () => {
  let done: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await done?.();
    done = undefined;
  });

  const setup = async () => {
    const host = new SimHost({
      iommus: [{ id: 'iommu0', dirtyTracking: true }],
      devices: [
        { bdf: '0000:00:03.0', model: 'edu', group: 3 },
        { uuid: MDEV, model: 'nic' },
      ],
    });
    const parts = await contractMemory(host);
    done = async () => {
      await parts.release();
      expect(host.census()).toEqual({ fds: 0, objects: {} });
    };
    return { host, cls: new IommufdIommuBackend(host, parts.events), ...parts };
  };

  it('uses a passed /dev/iommu fd without closing it, and a passed device fd it then owns', async () => {
    const { host, cls, space } = await setup();
    const iommuFd = host.open('/dev/iommu', O_RDWR);
    const backend = new IommufdObject('iommufd0', host, iommuFd);
    const deviceFd = host.open('/dev/vfio/devices/vfio0', O_RDWR);
    const d = new VfioDevice({ fd: deviceFd });
    d.iommufd = backend;
    expect(d.name).toBe(`VFIO_FD${deviceFd}`);
    await cls.attachDevice(d.name, d, space);
    expect(d.fd).toBe(deviceFd);
    await cls.detachDevice(d);
    expect(backend.fd).toBe(iommuFd); // still open: it is the caller's
    expect(() => host.close(deviceFd)).toThrow(/EBADF/); // the device fd went with the detach
    host.close(iommuFd);
  });

  it('attaches an mdev to the IOAS itself: no HWPT, no host IOMMU device, no IOMMU dirty tracking', async () => {
    const { host, cls, space, memory } = await setup();
    const backend = new IommufdObject('iommufd0', host);
    const pci = new VfioDevice({ sysfsdev: '/sys/bus/pci/devices/0000:00:03.0' });
    const mdev = new VfioDevice({ sysfsdev: `/sys/bus/mdev/devices/${MDEV}` });
    pci.iommufd = backend;
    mdev.iommufd = backend;
    const c = (await cls.attachDevice(pci.name, pci, space)) as IommufdContainer;
    expect(await cls.attachDevice(mdev.name, mdev, space)).toBe(c);
    expect(mdev.mdev).toBe(true);
    expect(mdev.hostIommuDevice).toBeUndefined();
    expect(c.hwpts.map((h) => h.devices.map((d) => d.name))).toEqual([['0000:00:03.0']]);
    expect(c.iommuDirtyTrackingSupported).toBe(false); // the mdev's writes would go unreported
    setBusMaster(host, mdev.fd, mdev.name, true);
    host.deviceDma(MDEV, 0x6000n, new Uint8Array(4).fill(7));
    expect([...memory.read(0x6000n, 4)]).toEqual([7, 7, 7, 7]);
    await cls.detachDevice(mdev);
    expect(c.iommuDirtyTrackingSupported).toBe(true);
    await cls.detachDevice(pci);
  });

  it('checks a passed fd is /dev/iommu when the object is created, naming the object and what the fd is', async () => {
    const { host } = await setup();
    const create = (fd: number) => iommufdObjectType.create({ id: 'io1', fd }, { host } as never);
    const iommuFd = host.open('/dev/iommu', O_RDWR);
    expect((create(iommuFd) as IommufdObject).fd).toBe(iommuFd);
    const other = host.eventfd(0, 0);
    expect(() => create(other)).toThrow(expect.objectContaining({ option: 'fd', message: expect.stringMatching(/^iommufd object 'io1': fd=\d+ is anon_inode:\[file\], not \/dev\/iommu$/) }));
    host.close(other);
    expect(() => create(other)).toThrow(`iommufd object 'io1': fd=${other} is not an open file descriptor (ENOENT)`);
    host.close(iommuFd);
  });

  it('says which iommufd object is missing when a device names none', async () => {
    const { cls, space } = await setup();
    const d = new VfioDevice({ sysfsdev: '/sys/bus/pci/devices/0000:00:03.0' });
    await expect(cls.attachDevice(d.name, d, space)).rejects.toThrow('0000:00:03.0: failed to attach through iommufd: the device names no iommufd object (iommufd=<id>)');
  });
});
