// vfio-pci behind a guest IOMMU: the containers follow the guest's map and unmap, so the device
// DMAs by IOVA into the guest RAM the guest mapped, and nowhere else.

import { describe, expect, it } from 'vitest';
import { ConfigError, Vmm, VIOMMU_WITHOUT_BOUNDS, guestIommuPlugin, isGuestIommuDevice, type VmmDevice } from '@vmmkit/core';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { SimDmaFault, SimHost } from '@vmmkit/sim';
import { vfioPciPlugin, type VfioPciDevice } from '../src/index.js';
import { MACHINE, NIC, described } from './helpers.js';

async function vmWithViommu(host: SimHost, viommu: string): Promise<{ vmm: Vmm; iommu: VmmDevice }> {
  const vmm = await Vmm.create({
    host,
    plugins: [legacyType1Plugin(), iommufdPlugin(), vfioPciPlugin(), guestIommuPlugin()],
    memory: [{ gpa: 0n, size: 16n << 20n }],
  });
  vmm.addObject('iommufd,id=iommufd0');
  return { vmm, iommu: await vmm.addDevice(viommu) };
}

/** The guest's driver turns on memory decoding and bus mastering. */
async function busMaster(device: VmmDevice): Promise<void> {
  await (device as VfioPciDevice).configWrite(0x04, 2, 0x0006);
}

describe.each(['legacy', 'iommufd'] as const)('behind a guest IOMMU (%s backend)', (backend) => {
  it('DMAs by IOVA into the guest RAM the guest mapped, and faults once it is unmapped', async () => {
    const host = new SimHost(MACHINE);
    const baseline = host.census();
    const { vmm, iommu } = await vmWithViommu(host, 'guest-iommu,id=viommu0,aw-bits=39');
    await busMaster(await vmm.addDevice(described(NIC, backend)));
    if (!isGuestIommuDevice(iommu)) throw new Error('not a guest IOMMU');
    await iommu.iommu.map(0x1_0000_0000n, 0x10000n, 0x20_0000n);
    const data = new Uint8Array(64).fill(0x5a);
    host.deviceDma(NIC, 0x1_0000_0040n, data);
    expect(vmm.memory.read(0x20_0040n, 64)).toEqual(data);
    // Guest physical addresses are not IOVAs any more.
    expect(() => host.deviceDma(NIC, 0x20_0000n, data)).toThrow(SimDmaFault);
    await iommu.iommu.unmap(0x1_0000_0000n, 0x10000n);
    expect(() => host.deviceDma(NIC, 0x1_0000_0040n, data)).toThrow(SimDmaFault);
    await iommu.iommu.map(0x8000n, 0x1000n, 0x30_0000n);
    await vmm.close();
    expect(host.census()).toEqual(baseline);
  });

  it('with DMA translation off, leaves the device in system memory (interrupt remapping only)', async () => {
    const host = new SimHost(MACHINE);
    const { vmm } = await vmWithViommu(host, 'guest-iommu,dma-translation=off');
    await busMaster(await vmm.addDevice(described(NIC, backend)));
    host.deviceDma(NIC, 0x20_0000n, new Uint8Array([1, 2, 3]));
    expect(vmm.memory.read(0x20_0000n, 3)).toEqual(new Uint8Array([1, 2, 3]));
    await vmm.close();
  });

  it('refuses enable-migration=on behind a guest IOMMU that reports no address width', async () => {
    const host = new SimHost(MACHINE);
    const { vmm } = await vmWithViommu(host, 'guest-iommu');
    await expect(vmm.addDevice(described(NIC, backend, ',enable-migration=on'))).rejects.toThrow(VIOMMU_WITHOUT_BOUNDS);
    await vmm.addDevice(described(NIC, backend));
    await vmm.close();
  });
});

it('must come before the devices it translates for, as on QEMU', async () => {
  const host = new SimHost(MACHINE);
  const vmm = await Vmm.create({ host, plugins: [legacyType1Plugin(), vfioPciPlugin(), guestIommuPlugin()], memory: [{ gpa: 0n, size: 1n << 20n }] });
  await vmm.addDevice(described(NIC, 'legacy'));
  await expect(vmm.addDevice('guest-iommu,aw-bits=48')).rejects.toThrow(ConfigError);
  await expect(vmm.addDevice('guest-iommu,aw-bits=48')).rejects.toThrow('must be added before the 1 device(s) already on the bus');
  await vmm.close();
});
