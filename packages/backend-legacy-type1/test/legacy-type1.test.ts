// What only the legacy backend does: group viability, the IOMMU type it picks, what it reads from
// GET_INFO, and QEMU's E2BIG refusal of an unmap bitmap over the kernel's limit.

import { afterEach, describe, expect, it } from 'vitest';
import { DirtyBitmap, VfioDevice, VfioError } from '@vmmkit/core';
import { VFIO_TYPE1v2_IOMMU } from '@vmmkit/core/uapi';
import { contractMemory } from '@vmmkit/core/testing';
import { SimHost, type SimHostConfig } from '@vmmkit/sim';
import { LegacyIommuBackend, type LegacyType1Container } from '../src/index.js';

const device = (bdf: string) => new VfioDevice({ sysfsdev: `/sys/bus/pci/devices/${bdf}` });

describe('legacy type1 backend', () => {
  let done: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await done?.();
    done = undefined;
  });

  const setup = async (config: SimHostConfig) => {
    const host = new SimHost(config);
    const parts = await contractMemory(host);
    const cls = new LegacyIommuBackend(host, parts.events);
    done = async () => {
      await parts.release();
      expect(host.census()).toEqual({ fds: 0, objects: {} });
    };
    return { host, cls, ...parts };
  };

  it('refuses a device whose group is not viable, naming the group', async () => {
    const { cls, space } = await setup({
      devices: [
        { bdf: '0000:00:03.0', model: 'edu', group: 7 },
        { bdf: '0000:00:04.0', model: 'edu', group: 7, driver: 'host' },
      ],
    });
    const d = device('0000:00:03.0');
    const e = await cls.attachDevice(d.name, d, space).then(() => undefined, (err: unknown) => err);
    expect(e).toBeInstanceOf(VfioError);
    expect((e as Error).message).toContain('0000:00:03.0: failed to attach through vfio-iommu-legacy: failed to use group 7: group is not viable');
  });

  it('names the device when it has no IOMMU group', async () => {
    const { cls, space } = await setup({ devices: [] });
    const d = device('0000:00:09.0');
    await expect(cls.attachDevice(d.name, d, space)).rejects.toThrow(/0000:00:09.0: failed to find the IOMMU group.*readlink.*ENOENT/);
  });

  it('prefers type1v2 and reads the IOVA ranges and migration capability from GET_INFO', async () => {
    const { cls, space } = await setup({ iommus: [{ id: 'i', dirtyTracking: false, awBits: 39 }], devices: [{ bdf: '0000:00:03.0', model: 'edu' }] });
    const d = device('0000:00:03.0');
    const c = (await cls.attachDevice(d.name, d, space)) as LegacyType1Container;
    expect(c.iommuType).toBe(VFIO_TYPE1v2_IOMMU);
    // type1 tracks dirty pages itself, whatever the IOMMU unit can do.
    expect(c.dirtyPgsizes).not.toBe(0n);
    expect(d.iommuDirtyTracking).toBe(true);
    expect(c.iommuDirtyTrackingSupported).toBe(true);
    expect(c.maxDirtyBitmapSize).toBe(256n << 20n);
    expect(c.dirtyPgsizes).toBe(0x1000n);
    expect(c.pgsizes).toBe(0x4020_1000n);
    expect(c.iovaRanges).toEqual([{ start: 0n, last: 0xfedf_ffffn }, { start: 0xfef0_0000n, last: (1n << 39n) - 1n }]);
    expect(d.hostIommuDevice?.awBits).toBe(39);
    expect(d.hostIommuDevice?.hwCaps).toBe(0n);
    await cls.detachDevice(d);
  });

  it('refuses an unmap-and-harvest whose bitmap exceeds the container limit with E2BIG, before asking the kernel', async () => {
    const { cls, space, memory } = await setup({ devices: [{ bdf: '0000:00:03.0', model: 'edu' }] });
    const d = device('0000:00:03.0');
    const c = (await cls.attachDevice(d.name, d, space)) as LegacyType1Container;
    await c.dirtyTracking.start();
    // A kernel that reported a limit of 64 pages (SimHost reports Linux's 256 MiB).
    const limit = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Object.getPrototypeOf(c)), 'maxDirtyBitmapSize')!;
    Object.defineProperty(c, 'maxDirtyBitmapSize', { value: 8n, configurable: true });
    const e = await c.dmaUnmap(0n, 128n * 4096n, { dirty: { gpa: 0n, memory } }).then(() => undefined, (err: unknown) => err);
    expect(e).toBeInstanceOf(VfioError);
    expect((e as VfioError).errno).toBe('E2BIG');
    expect((e as Error).message).toContain('a dirty bitmap of 16 bytes exceeds the container\'s limit of 8 bytes (E2BIG)');
    // So is a query: type1 needs whole mappings per call, so it cannot be split.
    const bitmap = new DirtyBitmap(memory.blocks[0]!.pages);
    await expect(c.queryDirtyBitmap(bitmap, 0n, memory.blocks[0]!.size)).rejects.toSatisfy((err: VfioError) => err.errno === 'E2BIG');
    Reflect.deleteProperty(c, 'maxDirtyBitmapSize');
    expect(limit.get!.call(c)).toBe(256n << 20n);
    await c.dirtyTracking.stop();
    await cls.detachDevice(d);
  });

  it('refuses a passed device fd, which only iommufd can use', async () => {
    const { cls, space } = await setup({ devices: [{ bdf: '0000:00:03.0', model: 'edu' }] });
    const d = new VfioDevice({ sysfsdev: '/sys/bus/pci/devices/0000:00:03.0', fd: 42 });
    await expect(cls.attachDevice(d.name, d, space)).rejects.toThrow(/needs the iommufd backend/);
  });
});
