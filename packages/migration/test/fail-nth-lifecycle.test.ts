// Fail the 1st, 2nd, ... Nth system call of a device's life outside migration: composing the VM
// and attaching the device (each backend, with and without device dirty tracking), detaching
// it, and closing the VM. The calls are counted in a clean run, not listed. Each failure is a
// typed error naming what failed and its errno, leaves the host's census at its baseline, and
// the VM then attaches the device and migrates successfully (issue 11).

import { describe, expect, it } from 'vitest';
import { Vmm, VmmError, errnoOf } from '@vmmkit/core';
import { SimHost } from '@vmmkit/sim';
import { NIC_A, ramHash, simMachine } from '@vmmkit/sim/testing';
import { migrate } from '../src/index.js';
import { addNic, allPlugins, type Backend } from './machines.js';

const VARIANTS: readonly { backend: Backend; extra: string }[] = [
  { backend: 'iommufd', extra: '' },
  { backend: 'iommufd', extra: ',x-device-dirty-page-tracking=off' },
  { backend: 'legacy', extra: '' },
  { backend: 'legacy', extra: ',x-device-dirty-page-tracking=off' },
];
const EMPTY = { fds: 0, objects: {} };

async function compose(host: SimHost, incoming = false): Promise<Vmm> {
  const vmm = await Vmm.create({ host, plugins: allPlugins(), memory: [{ gpa: 0n, size: 4n << 20n, name: 'ram' }], incoming });
  vmm.addObject('iommufd,id=iommufd0');
  return vmm;
}

/**
 * The step fails with a typed error carrying the errno, naming the device or the memory option;
 * or it worked around the failure (as QEMU does for an unknown IOVA range, say) and warned.
 */
function expectTyped(e: unknown, warnings: readonly string[], what: string): void {
  if (e === undefined) {
    expect(warnings.find((w) => w.includes('EIO')), `${what}: a call failed and the step went on, so it must warn`).toBeDefined();
    return;
  }
  expect(e, what).toBeInstanceOf(VmmError);
  expect(errnoOf(e), `${what}: ${String(e)}`).toBe('EIO');
  expect(String(e), what).toMatch(new RegExp(`${NIC_A}|memory block`));
}

/** `vmm` (with the nic attached again if need be) migrates, and both sides release everything. */
async function expectMigrates(host: SimHost, vmm: Vmm, variant: (typeof VARIANTS)[number], what: string): Promise<void> {
  if (!vmm.devices.length) await addNic(vmm, NIC_A, variant.backend, variant.extra);
  const dstHost = new SimHost(simMachine());
  const dst = await compose(dstHost, true);
  await addNic(dst, NIC_A, variant.backend, variant.extra);
  await migrate(vmm, dst, { maxIterations: 1, downtimeLimitMs: 0 });
  expect(ramHash(dst.memory), what).toBe(ramHash(vmm.memory));
  await Promise.all([vmm.close(), dst.close()]);
  expect(host.census(), what).toEqual(EMPTY);
  expect(dstHost.census(), what).toEqual(EMPTY);
}

/** The calls `step` makes on a host set up by `prepare`. */
async function countCalls<T>(prepare: (host: SimHost) => Promise<T>, step: (host: SimHost, state: T) => Promise<unknown>): Promise<number> {
  const host = new SimHost(simMachine());
  const state = await prepare(host);
  const before = host.callCount('any');
  await step(host, state);
  return host.callCount('any') - before;
}

describe.each(VARIANTS)('fail the nth call of a device\'s life: $backend$extra', (variant) => {
  const attach = (vmm: Vmm) => vmm.addDevice(`vfio-pci,host=${NIC_A}${variant.backend === 'iommufd' ? ',iommufd=iommufd0' : ''}${variant.extra}`);

  it('composing the VM and attaching the device', async () => {
    const calls = await countCalls(async () => undefined, async (host) => attach(await compose(host)));
    for (let nth = 1; nth <= calls; nth++) {
      const host = new SimHost(simMachine());
      host.injectFault({ syscall: 'any', errno: 'EIO', nth });
      let vmm: Vmm | undefined;
      const warnings: string[] = [];
      const e = await compose(host).then(async (v) => {
        vmm = v;
        v.events.on('vfio:warning', (w) => warnings.push(w.message));
        await attach(v);
      }).then(() => undefined, (err: unknown) => err);
      const what = `create and attach, call ${nth} of ${calls} (${host.lastInjectedFault})`;
      expectTyped(e, warnings, what);
      if (e === undefined) {
        await expectMigrates(host, vmm!, variant, what);
        continue;
      }
      if (!vmm) {
        expect(host.census(), `${what}: nothing of the VM is left`).toEqual(EMPTY);
        vmm = await compose(host);
      } else {
        expect(vmm.devices, what).toEqual([]);
      }
      await expectMigrates(host, vmm, variant, what);
    }
  }, 120_000);

  it('detaching the device', async () => {
    const calls = await countCalls(async (host) => {
      const vmm = await compose(host);
      return { vmm, nic: await attach(vmm) };
    }, (_, { vmm, nic }) => vmm.removeDevice(nic.id));
    for (let nth = 1; nth <= calls; nth++) {
      const host = new SimHost(simMachine());
      const vmm = await compose(host);
      const warnings: string[] = [];
      vmm.events.on('vfio:warning', (w) => warnings.push(w.message));
      const baseline = host.census();
      const nic = await attach(vmm);
      host.injectFault({ syscall: 'any', errno: 'EIO', nth });
      const e = await vmm.removeDevice(nic.id).then(() => undefined, (err: unknown) => err);
      const what = `detach, call ${nth} of ${calls} (${host.lastInjectedFault})`;
      expectTyped(e, warnings, what);
      expect(vmm.devices, `${what}: the device is gone all the same`).toEqual([]);
      expect(host.census(), `${what}: everything it held is released`).toEqual(baseline);
      await expectMigrates(host, vmm, variant, what);
    }
  }, 120_000);

  it('closing the VM', async () => {
    const calls = await countCalls(async (host) => {
      const vmm = await compose(host);
      await attach(vmm);
      return vmm;
    }, (_, vmm) => vmm.close());
    for (let nth = 1; nth <= calls; nth++) {
      const host = new SimHost(simMachine());
      const vmm = await compose(host);
      const warnings: string[] = [];
      vmm.events.on('vfio:warning', (w) => warnings.push(w.message));
      await attach(vmm);
      host.injectFault({ syscall: 'any', errno: 'EIO', nth });
      const e = await vmm.close().then(() => undefined, (err: unknown) => err);
      const what = `close, call ${nth} of ${calls} (${host.lastInjectedFault})`;
      expectTyped(e, warnings, what);
      expect(host.census(), `${what}: everything is released`).toEqual(EMPTY);
      // The host is fine: a new VM attaches the device and migrates.
      await expectMigrates(host, await compose(host), variant, what);
    }
  }, 120_000);
});
