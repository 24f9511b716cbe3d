// Devices of one address space on different backends: a legacy type1 container and an IOAS side
// by side, both mapping the same guest RAM.

import { expect, it } from 'vitest';
import { setBusMaster, VfioDevice } from '@vmmkit/core';
import { contractMemory } from '@vmmkit/core/testing';
import { LegacyIommuBackend } from '@vmmkit/backend-legacy-type1';
import { SimHost } from '@vmmkit/sim';
import { TWO_EDU_MACHINE } from '@vmmkit/sim/testing';
import { IommufdObject, IommufdIommuBackend } from '../src/index.js';

it('attaches one device through type1 and another through iommufd, both DMA into the same guest RAM', async () => {
  const host = new SimHost(TWO_EDU_MACHINE);
  const { memory, space, events, release } = await contractMemory(host);
  const legacy = new LegacyIommuBackend(host, events);
  const iommufd = new IommufdIommuBackend(host, events);
  const a = new VfioDevice({ sysfsdev: '/sys/bus/pci/devices/0000:00:03.0' });
  const b = new VfioDevice({ sysfsdev: '/sys/bus/pci/devices/0000:00:04.0' });
  b.iommufd = new IommufdObject('iommufd0', host);
  const ca = await legacy.attachDevice(a.name, a, space);
  const cb = await iommufd.attachDevice(b.name, b, space);
  expect(space.containers).toEqual([ca, cb]);
  expect(ca.backend.kind).toBe('vfio-iommu-legacy');
  expect(cb.backend.kind).toBe('vfio-iommu-iommufd');
  for (const [device, gpa, byte] of [[a, 0x1000n, 0xaa], [b, 0x2000n, 0xbb]] as const) {
    setBusMaster(host, device.fd, device.name, true);
    host.deviceDma(device.name, gpa, new Uint8Array(64).fill(byte));
    expect(memory.read(gpa, 64).every((x) => x === byte)).toBe(true);
  }
  await legacy.detachDevice(a);
  await iommufd.detachDevice(b);
  expect(space.containers).toEqual([]);
  await release();
  expect(host.census()).toEqual({ fds: 0, objects: {} });
});
