// Auto domains on SimHost: devices behind IOMMUs that differ in dirty tracking end up in
// different HWPTs; the container tracks dirty pages only while every device's HWPT does.

import { afterEach, describe, expect, it } from 'vitest';
import { VfioDevice, type VmmEvents } from '@vmmkit/core';
import { contractMemory } from '@vmmkit/core/testing';
import { SimHost } from '@vmmkit/sim';
import { IommufdObject, IommufdIommuBackend, type IommufdContainer } from '../src/index.js';

const machine = () =>
  new SimHost({
    iommus: [{ id: 'dirty', dirtyTracking: true }, { id: 'plain', dirtyTracking: false }],
    devices: [
      { bdf: '0000:00:03.0', model: 'edu', iommu: 'dirty', group: 3 },
      { bdf: '0000:00:04.0', model: 'edu', iommu: 'plain', group: 4 },
      { bdf: '0000:00:05.0', model: 'edu', iommu: 'dirty', group: 5 },
    ],
  });

describe('iommufd auto domains', () => {
  let cleanup: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await cleanup?.();
    cleanup = undefined;
  });

  const setup = async () => {
    const host = machine();
    const parts = await contractMemory(host);
    const iommufd = new IommufdObject('iommufd0', host);
    const cls = new IommufdIommuBackend(host, parts.events);
    const hwpts: VmmEvents['vfio:hwpt-allocated'][0][] = [];
    parts.events.on('vfio:hwpt-allocated', (e) => hwpts.push(e));
    const attach = async (bdf: string) => {
      const device = new VfioDevice({ sysfsdev: `/sys/bus/pci/devices/${bdf}` });
      device.iommufd = iommufd;
      const container = (await cls.attachDevice(bdf, device, parts.space)) as IommufdContainer;
      return { device, container };
    };
    const start = host.census();
    cleanup = async () => {
      await parts.release();
      expect(host.census()).toEqual({ fds: 0, objects: {} });
    };
    return { host, cls, attach, hwpts, start, iommufd };
  };

  it('puts devices whose IOMMUs differ in dirty tracking into different HWPTs of one IOAS', async () => {
    const { cls, attach, hwpts, iommufd } = await setup();
    const a = await attach('0000:00:03.0');
    const b = await attach('0000:00:04.0');
    const c = await attach('0000:00:05.0');
    expect(b.container).toBe(a.container);
    expect(c.container).toBe(a.container);
    expect(hwpts.map((e) => [e.device, e.dirtyTracking])).toEqual([['0000:00:03.0', true], ['0000:00:04.0', false]]);
    expect(a.container.hwpts.map((h) => h.devices.map((d) => d.name))).toEqual([['0000:00:03.0', '0000:00:05.0'], ['0000:00:04.0']]);
    expect([a, b, c].map((x) => x.device.iommuDirtyTracking)).toEqual([true, false, true]);
    expect(a.device.hostIommuDevice!.hwCaps).toBe(1n);
    expect(b.device.hostIommuDevice!.hwCaps).toBe(0n);
    // One device without IOMMU tracking would write pages nobody reports.
    expect(a.container.iommuDirtyTrackingSupported).toBe(false);
    await cls.detachDevice(b.device);
    expect(a.container.hwpts).toHaveLength(1);
    expect(a.container.iommuDirtyTrackingSupported).toBe(true);
    await cls.detachDevice(a.device);
    await cls.detachDevice(c.device);
    expect(iommufd.users).toBe(0);
  });

  it('still separates them when the device without dirty tracking comes first', async () => {
    const { cls, attach, hwpts } = await setup();
    const b = await attach('0000:00:04.0');
    const a = await attach('0000:00:03.0');
    expect(hwpts.map((e) => e.dirtyTracking)).toEqual([false, true]);
    expect(a.container.hwpts).toHaveLength(2);
    await cls.detachDevice(a.device);
    await cls.detachDevice(b.device);
  });

  it('shares one /dev/iommu fd between devices and closes it after the last', async () => {
    const { host, cls, attach, iommufd } = await setup();
    const a = await attach('0000:00:03.0');
    const fd = iommufd.fd;
    const b = await attach('0000:00:05.0');
    expect(iommufd.fd).toBe(fd);
    expect(iommufd.users).toBe(2);
    expect(iommufd.busyReason()).toBe('2 device(s) use it');
    await cls.detachDevice(a.device);
    expect(iommufd.fd).toBe(fd);
    await cls.detachDevice(b.device);
    expect(iommufd.fd).toBe(-1);
    expect(() => host.close(fd)).toThrow(/EBADF/);
  });
});
