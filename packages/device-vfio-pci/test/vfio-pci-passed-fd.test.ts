// fd= ownership (issue 11, defect 5): a passed fd is checked to be a VFIO device cdev before it is
// taken; a failed realize never closes an fd the caller still owns; a successful one makes it
// the device's, closed when the device goes.

import { expect, it } from 'vitest';
import { ConfigError, VfioError } from '@vmmkit/core';
import { O_CLOEXEC, O_RDWR, VFIO_DEVICE_GET_INFO } from '@vmmkit/core/uapi';
import type { IommufdObject } from '@vmmkit/backend-iommufd';
import { SimHost } from '@vmmkit/sim';
import { EDU, EDU2, MACHINE, vmmOn } from './helpers.js';

const failure = (promise: Promise<unknown>): Promise<unknown> => promise.then(() => undefined, (e: unknown) => e);

it('refuses an fd that is not a VFIO device cdev, naming the option, and leaves it and the VM as they were', async () => {
  const host = new SimHost(MACHINE);
  const vmm = await vmmOn(host);
  const iommufd = vmm.addObject('iommufd,id=iommufd0') as IommufdObject;
  await vmm.addDevice(`vfio-pci,host=${EDU},iommufd=iommufd0`);
  const census = host.census();
  // The iommufd object's own /dev/iommu fd: open, but not a device.
  const e = await failure(vmm.addDevice(`vfio-pci,fd=${iommufd.fd},iommufd=iommufd0`));
  expect(e).toBeInstanceOf(ConfigError);
  expect((e as ConfigError).option).toBe('fd');
  expect(String(e)).toContain(`fd=${iommufd.fd} is /dev/iommu, not a VFIO device cdev`);
  const closed = await failure(vmm.addDevice('vfio-pci,fd=99,iommufd=iommufd0'));
  expect(closed).toBeInstanceOf(ConfigError);
  expect(String(closed)).toContain('fd=99 is not an open file descriptor (ENOENT)');
  expect(host.census()).toEqual(census);
  // The iommufd object still works for the next device, and the VM closes cleanly.
  await vmm.addDevice(`vfio-pci,host=${EDU2},iommufd=iommufd0`);
  await vmm.close();
  expect(host.census()).toEqual({ fds: 0, objects: {} });
});

it('takes a passed device cdev only when realize succeeds: a failure leaves it open for its owner', async () => {
  const host = new SimHost(MACHINE);
  const vmm = await vmmOn(host);
  vmm.addObject('iommufd,id=iommufd0');
  const cdev = host.readdir(`/sys/bus/pci/devices/${EDU}/vfio-dev`)[0]!;
  const fd = host.open(`/dev/vfio/devices/${cdev}`, O_RDWR | O_CLOEXEC);
  host.injectFault({ ioctl: VFIO_DEVICE_GET_INFO, on: 'vfio-device', errno: 'EIO' });
  const e = await failure(vmm.addDevice(`vfio-pci,fd=${fd},iommufd=iommufd0`));
  expect(e).toBeInstanceOf(VfioError);
  expect((e as VfioError).errno).toBe('EIO');
  expect(host.readlink(`/proc/self/fd/${fd}`), 'the caller still has its fd').toBe(`/dev/vfio/devices/${cdev}`);
  host.close(fd);
  await vmm.close();
  expect(host.census()).toEqual({ fds: 0, objects: {} });

  // Realized, the fd is the device's: removing the device closes it.
  const vmm2 = await vmmOn(host);
  vmm2.addObject('iommufd,id=iommufd0');
  const fd2 = host.open(`/dev/vfio/devices/${cdev}`, O_RDWR | O_CLOEXEC);
  const dev = await vmm2.addDevice(`vfio-pci,fd=${fd2},iommufd=iommufd0`);
  await vmm2.removeDevice(dev.id);
  expect(() => host.readlink(`/proc/self/fd/${fd2}`)).toThrow(/ENOENT/);
  await vmm2.close();
  expect(host.census()).toEqual({ fds: 0, objects: {} });
});
