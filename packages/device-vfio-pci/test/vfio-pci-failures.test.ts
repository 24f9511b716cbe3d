// Every ioctl of realize fails in turn: the VMM gets a VfioError naming the device and the errno,
// and nothing is left behind. Also bad options, and hot reset's ownership rules.

import { describe, expect, it } from 'vitest';
import { ConfigError, LinuxHost, VfioError, Vmm } from '@vmmkit/core';
import { IOMMU_IOAS_IOVA_RANGES, VFIO_CHECK_EXTENSION, ioctlName, type FdKind } from '@vmmkit/core/uapi';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { SimHost } from '@vmmkit/sim';
import { vfioPciPlugin, type VfioPciDevice } from '../src/index.js';
import { described, EDU, EDU2, MACHINE, NIC, tick, vmmOn } from './helpers.js';

/** Failures realize survives on purpose, as QEMU does: an extension probe, the IOVA range query. */
const TOLERATED = new Set([VFIO_CHECK_EXTENSION, IOMMU_IOAS_IOVA_RANGES]);

interface Call {
  readonly request: number;
  readonly on: FdKind | undefined;
  /** Which call of this request on this kind of fd it was (1-based). */
  readonly nth: number;
}

/** The ioctls one realize makes, in order. */
async function recordRealize(backend: 'legacy' | 'iommufd'): Promise<Call[]> {
  const host = new SimHost(MACHINE);
  const vmm = await vmmOn(host);
  if (backend === 'iommufd') vmm.addObject('iommufd,id=iommufd0');
  const calls: Call[] = [];
  const counts = new Map<string, number>();
  const ioctl = host.ioctl.bind(host);
  host.ioctl = (fd, request, arg) => {
    const on = host.kernel.fds.get(fd).kind;
    const key = `${request}:${on}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    calls.push({ request, on, nth: counts.get(key)! });
    return ioctl(fd, request, arg);
  };
  await vmm.addDevice(described(NIC, backend));
  host.ioctl = ioctl; // realize only: not the teardown
  await vmm.close();
  return calls;
}

describe.for(['legacy', 'iommufd'] as const)('vfio-pci realize on the %s backend', (backend) => {
  it('fails each ioctl in turn with a VfioError naming the device and errno, leaving nothing behind', async () => {
    const calls = await recordRealize(backend);
    expect(calls.length).toBeGreaterThan(15);
    let failed = 0;
    for (const call of calls) {
      const name = `${ioctlName(call.request, call.on) ?? call.request} #${call.nth}`;
      const host = new SimHost(MACHINE);
      const vmm = await vmmOn(host);
      if (backend === 'iommufd') vmm.addObject('iommufd,id=iommufd0');
      const before = host.census();
      host.injectFault({ ioctl: call.request, on: call.on, nth: call.nth, errno: 'EIO' });
      const e = await vmm.addDevice(described(NIC, backend)).then(() => undefined, (err: unknown) => err);
      if (e === undefined) {
        expect(TOLERATED.has(call.request), `${name} failed but realize went on`).toBe(true);
      } else {
        failed++;
        expect(e, name).toBeInstanceOf(VfioError);
        expect((e as VfioError).errno, name).toBe('EIO');
        expect((e as Error).message, name).toContain(NIC);
        expect(host.census(), `after a fault in ${name}`).toEqual(before);
        expect(vmm.devices, name).toEqual([]);
      }
      await vmm.close();
      await tick();
      expect(host.census(), `after closing, with a fault in ${name}`).toEqual({ fds: 0, objects: {} });
    }
    expect(failed).toBeGreaterThan(calls.length - 4);
  });
});

describe('vfio-pci options', () => {
  it('refuses bad or unknown options, naming them', async () => {
    const vmm = await vmmOn(new SimHost(MACHINE));
    const refused = async (desc: string, message: RegExp) =>
      expect(vmm.addDevice(desc), desc).rejects.toSatisfy((e: Error) => e instanceof ConfigError && message.test(e.message));
    await refused(`vfio-pci,host=${EDU},enable-migration=maybe`, /invalid value 'maybe' for option 'enable-migration' \(expected on, off or auto\)/);
    await refused(`vfio-pci,host=${EDU},x-device-dirty-page-tracking=2`, /invalid value '2' for option 'x-device-dirty-page-tracking'/);
    await refused(`vfio-pci,host=${EDU},rombar=0`, /unknown option 'rombar' \(known: id, host, sysfsdev, fd, iommufd, vfio-iommu, enable-migration/);
    await refused('vfio-pci,fd=12', /fd=12 passes a device cdev, which only the iommufd backend can use/);
    await refused('vfio-pci,host=0000:00:03.0,iommufd=nope', /refers to 'nope', but there is no -object iommufd/);
    await refused('vfio-pci', /no host device given/);
    await vmm.close();
  });
});

describe.for(['legacy', 'iommufd'] as const)('hot reset on the %s backend', (backend) => {
  it('refuses to reset a bus with a device the VM does not own, and a single reset that would reset another', async () => {
    const host = new SimHost(MACHINE); // EDU, EDU2 and NIC share bus 00
    const vmm = await vmmOn(host);
    if (backend === 'iommufd') vmm.addObject('iommufd,id=iommufd0');
    const a = (await vmm.addDevice(described(EDU, backend))) as VfioPciDevice;
    const b = (await vmm.addDevice(described(EDU2, backend))) as VfioPciDevice;
    const notOwned = backend === 'legacy' ? /depends on group 5 \(device 0000:00:05.0\), which is not owned/ : /depends on 0000:00:05.0, which are not owned/;
    await expect(a.hotReset(false)).rejects.toSatisfy((e: VfioError) => e.errno === 'EPERM' && notOwned.test(e.message));
    await vmm.addDevice(described(NIC, backend));
    await expect(a.hotReset(true)).rejects.toSatisfy((e: VfioError) => e.errno === 'EINVAL' && /would also reset 0000:00:04.0/.test(e.message));
    await a.configWrite(0x04, 2, 0x2);
    await b.configWrite(0x04, 2, 0x2);
    await a.barWrite(0, 0x04, 4, 1n);
    await b.barWrite(0, 0x04, 4, 1n);
    await a.hotReset(false);
    for (const d of [a, b]) {
      await d.configWrite(0x04, 2, 0x2); // decoding is off after a reset
      expect((await d.barRead(0, 0x04, 4))).toBe(0n); // liveness back to its power-on value
    }
    await vmm.close();
  });

  it('resets a device without function reset through a single hot reset', async () => {
    const host = new SimHost({ devices: [{ bdf: '0000:01:00.0', model: 'edu', resettable: false }] });
    const vmm = await vmmOn(host);
    if (backend === 'iommufd') vmm.addObject('iommufd,id=iommufd0');
    const d = (await vmm.addDevice(described('0000:01:00.0', backend))) as VfioPciDevice;
    expect(d.vfio.resetWorks).toBe(false);
    await d.configWrite(0x04, 2, 0x2);
    await d.barWrite(0, 0x04, 4, 5n);
    await d.reset();
    await d.configWrite(0x04, 2, 0x2);
    expect((await d.barRead(0, 0x04, 4))).toBe(0n);
    await vmm.close();
  });
});

describe.skipIf(process.platform !== 'linux')('vfio-pci on this machine (LinuxHost)', () => {
  it('goes as far as the host allows and names what is missing', async () => {
    const host = new LinuxHost();
    const vmm = await Vmm.create({ host, plugins: [legacyType1Plugin(), iommufdPlugin(), vfioPciPlugin()], memory: [{ gpa: 0n, size: 1n << 20n }] });
    vmm.addObject('iommufd,id=iommufd0');
    for (const [desc, missing] of [
      ['vfio-pci,host=0000:00:1f.7', /0000:00:1f.7: failed to .*(IOMMU group|group).*(ENOENT|EACCES)/],
      ['vfio-pci,host=0000:00:1f.7,iommufd=iommufd0', /0000:00:1f.7: failed to .*(vfio-dev|cdev|\/dev\/iommu).*(ENOENT|EACCES)/],
    ] as const) {
      if (host.exists('/sys/bus/pci/devices/0000:00:1f.7')) continue; // a real device there: not this test's business
      await expect(vmm.addDevice(desc)).rejects.toSatisfy((e: Error) => e instanceof VfioError && missing.test(e.message));
    }
    expect(vmm.devices).toEqual([]);
    await vmm.close();
  });
});
