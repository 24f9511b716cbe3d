// Fail the 1st, 2nd, ... Nth host call of vfio-pci's realize and of a guest's MSI-X enable, whatever
// the call (ioctl, pread/pwrite through the device's I/O, mmap, eventfd, close), with no
// hand-kept list: the calls are counted in a clean run, then each is failed in turn. A failure
// must come out as an error naming the device (or its container) and the errno; a failed realize
// leaves the host's census as it was, a failed MSI-X enable leaves MSI-X off (interrupts off, as
// QEMU leaves them) and the device working; closing the VMM releases everything.

import { describe, expect, it } from 'vitest';
import { VfioError, errnoOf } from '@vmmkit/core';
import { SimHost } from '@vmmkit/sim';
import type { VfioPciDevice } from '../src/index.js';
import { described, findCap, MACHINE, NIC, vmmOn } from './helpers.js';

const PCI_CAP_ID_MSIX = 0x11;

async function vm(host: SimHost, backend: 'legacy' | 'iommufd') {
  const vmm = await vmmOn(host);
  if (backend === 'iommufd') vmm.addObject('iommufd,id=iommufd0');
  return vmm;
}

describe.for(['legacy', 'iommufd'] as const)('vfio-pci on the %s backend, every host call failed in turn', (backend) => {
  it('realize: a typed error naming the device and EIO, or a failure realize tolerates; nothing left behind', async () => {
    const clean = new SimHost(MACHINE);
    const cleanVmm = await vm(clean, backend);
    const start = clean.callCount('any');
    await cleanVmm.addDevice(described(NIC, backend));
    const calls = clean.callCount('any') - start;
    await cleanVmm.close();
    expect(calls).toBeGreaterThan(30);
    let failed = 0;
    for (let nth = 1; nth <= calls; nth++) {
      const host = new SimHost(MACHINE);
      const vmm = await vm(host, backend);
      const before = host.census();
      host.injectFault({ syscall: 'any', errno: 'EIO', nth });
      const e = await vmm.addDevice(described(NIC, backend)).then(() => undefined, (err: unknown) => err);
      const what = `call ${nth} of ${calls} (${host.lastInjectedFault})`;
      if (e !== undefined) {
        failed++;
        expect(e, what).toBeInstanceOf(VfioError);
        expect(errnoOf(e), `${what}: ${String(e)}`).toBe('EIO');
        expect(String(e), what).toMatch(new RegExp(`${NIC}|container`));
        expect(vmm.devices, what).toEqual([]);
        expect(host.census(), what).toEqual(before);
      }
      expect(vmm.running, what).toBe(true);
      await vmm.close();
      expect(host.census(), what).toEqual({ fds: 0, objects: {} });
    }
    expect(failed, 'most calls of realize are not optional').toBeGreaterThan(calls / 2);
  }, 120_000);

  it('a guest enabling MSI-X: the access fails naming the device, MSI-X stays off, and the device still works', async () => {
    const enable = async (d: VfioPciDevice, msix: number): Promise<void> => d.configWrite(msix + 2, 2, 0x8000);
    const clean = new SimHost(MACHINE);
    const cleanVmm = await vm(clean, backend);
    const cleanNic = (await cleanVmm.addDevice(described(NIC, backend))) as VfioPciDevice;
    const msix = await findCap(cleanNic, PCI_CAP_ID_MSIX);
    const start = clean.callCount('any');
    await enable(cleanNic, msix);
    const calls = clean.callCount('any') - start;
    expect(cleanNic.interruptMode).toBe('msix');
    await cleanVmm.close();
    expect(calls).toBeGreaterThan(0);
    for (let nth = 1; nth <= calls; nth++) {
      const host = new SimHost(MACHINE);
      const vmm = await vm(host, backend);
      const d = (await vmm.addDevice(described(NIC, backend))) as VfioPciDevice;
      host.injectFault({ syscall: 'any', errno: 'EIO', nth });
      const e = await enable(d, msix).then(() => undefined, (err: unknown) => err);
      const what = `call ${nth} of ${calls} (${host.lastInjectedFault})`;
      expect(e, what).toBeInstanceOf(VfioError);
      expect(errnoOf(e), `${what}: ${String(e)}`).toBe('EIO');
      expect(String(e), what).toContain(NIC);
      expect(d.interruptMode, what).not.toBe('msix');
      // The guest reads MSI-X as still disabled (the write did not take), so it can try again.
      expect((await d.configRead(msix + 2, 2)) & 0x8000, what).toBe(0);
      // The next access goes through.
      await enable(d, msix);
      expect(d.interruptMode, what).toBe('msix');
      await vmm.close();
      expect(host.census(), what).toEqual({ fds: 0, objects: {} });
    }
  }, 120_000);
});
