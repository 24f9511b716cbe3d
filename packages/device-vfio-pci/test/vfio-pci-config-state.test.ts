// The emulated state migration carries beside the VFIO data: config space as the guest sees it
// and the MSI-X table, restored on a second VMM before its guest runs.

import { describe, expect, it } from 'vitest';
import { VfioError } from '@vmmkit/core';
import { SimHost } from '@vmmkit/sim';
import type { VfioPciDevice } from '../src/index.js';
import { EDU, MACHINE, NIC, described, findCap, nextInterrupt, tick, vmmOn } from './helpers.js';

const NIC_MSIX_TABLE = 0x2000;
const MSIX_CAP = 0x11;

async function nicOn(backend: 'legacy' | 'iommufd') {
  const host = new SimHost(MACHINE);
  const vmm = await vmmOn(host);
  if (backend === 'iommufd') vmm.addObject('iommufd,id=iommufd0');
  return { host, vmm, d: (await vmm.addDevice(described(NIC, backend))) as VfioPciDevice };
}

describe.for(['legacy', 'iommufd'] as const)('vfio-pci config state (%s backend)', (backend) => {
  it('moves BARs, the command register and a live MSI-X setup to another VMM', async () => {
    const src = await nicOn(backend);
    const msix = await findCap(src.d, MSIX_CAP);
    await src.d.configWrite(0x10, 4, 0xfebf_0000);
    await src.d.configWrite(0x04, 2, 0x0006);
    await src.d.barWrite(0, NIC_MSIX_TABLE, 8, 0xfee0_2000n);
    await src.d.barWrite(0, NIC_MSIX_TABLE + 8, 4, 0x66n);
    await src.d.barWrite(0, NIC_MSIX_TABLE + 12, 4, 0n); // unmask vector 0
    await src.d.configWrite(msix + 2, 2, 0x8000);
    const state = await src.d.saveState();

    const dst = await nicOn(backend === 'legacy' ? 'iommufd' : 'legacy');
    expect((await dst.d.configRead(0x04, 2)) & 0x4).toBe(0); // vfio-pci cleared Bus Master Enable at open
    await dst.d.loadState(state);
    for (let at = 0; at < 0x100; at += 4) expect((await dst.d.configRead(at, 4)), `config dword 0x${at.toString(16)}`).toBe((await src.d.configRead(at, 4)));
    expect(dst.d.interruptMode).toBe('msix');
    expect((await dst.d.barRead(0, NIC_MSIX_TABLE, 8))).toBe(0xfee0_2000n);
    // The restored vector delivers: the nic's receive interrupt arrives with the migrated message
    // (and its DMA works, Bus Master Enable being restored).
    const irq = nextInterrupt(dst.d);
    await dst.d.barWrite(0, 0x10, 4, 0x10_0000n); // ring base
    await dst.d.barWrite(0, 0x18, 4, 16n); // ring size
    await dst.d.barWrite(0, 0x28, 4, 1000n); // packets per second
    await dst.d.barWrite(0, 0x2c, 4, 1n); // an interrupt per packet
    await dst.d.barWrite(0, 0x04, 4, 3n); // receive and interrupts on
    dst.host.advance(5);
    await tick();
    expect((await irq).message).toEqual({ address: 0xfee0_2000n, data: 0x66 });
    await src.vmm.close();
    await dst.vmm.close();
  });

  it('refuses a state that is not of this device, naming the device', async () => {
    const { vmm, d } = await nicOn(backend);
    const state = await d.saveState();
    await expect(d.loadState(state.subarray(0, 20))).rejects.toThrow(VfioError);
    await expect(d.loadState(state.subarray(0, 20))).rejects.toThrow(`${NIC}: failed to load the migrated config state`);
    const edu = (await vmm.addDevice(`vfio-pci,host=${EDU}`)) as VfioPciDevice;
    await expect(edu.loadState(state)).rejects.toThrow('the state has an MSI-X table, the device has no MSI-X');
    await vmm.close();
  });
});
