// Devices of one VM on different backends, composed through the Vmm root.

import { expect, it } from 'vitest';
import { SimHost } from '@vmmkit/sim';
import type { VfioPciDevice } from '../src/index.js';
import { EDU, MACHINE, NIC, tick, vmmOn } from './helpers.js';

it('runs an edu on legacy type1 and a nic on iommufd side by side in one VM', async () => {
  const host = new SimHost(MACHINE);
  const vmm = await vmmOn(host);
  vmm.addObject('iommufd,id=iommufd0');
  const edu = (await vmm.addDevice(`-device vfio-pci,host=${EDU},id=edu0`)) as VfioPciDevice;
  const nic = (await vmm.addDevice({ driver: 'vfio-pci', host: NIC, iommufd: 'iommufd0', id: 'nic0' })) as VfioPciDevice;
  expect(edu.vfio.container!.backend.kind).toBe('vfio-iommu-legacy');
  expect(nic.vfio.container!.backend.kind).toBe('vfio-iommu-iommufd');
  expect(edu.vfio.container).not.toBe(nic.vfio.container);
  // Both containers map the same guest RAM: each device reaches it.
  for (const [d, gpa] of [[edu, 0x3000n], [nic, 0x4000n]] as const) {
    await d.configWrite(0x04, 2, (await d.configRead(0x04, 2)) | 0x6);
    host.deviceDma(d.name, gpa, new Uint8Array([1, 2, 3]));
    expect([...vmm.memory.read(gpa, 3)]).toEqual([1, 2, 3]);
  }
  expect(vmm.devices.map((d) => d.id)).toEqual(['edu0', 'nic0']);
  await vmm.removeDevice('edu0');
  expect(edu.vfio.fd).toBe(-1);
  await vmm.close();
  await tick();
  expect(host.census()).toEqual({ fds: 0, objects: {} });
});
