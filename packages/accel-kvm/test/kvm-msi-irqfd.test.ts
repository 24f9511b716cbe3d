// MSI-X through irqfds end to end: the nic-ring guest on KVM drives a nic served over vfio-user
// by another process (LinuxHost, guest RAM in a memfd the server maps), whose MSI-X eventfds are
// real (passed over SCM_RIGHTS): the accelerator offers its MSI router, the vfio-pci device
// routes the guest's unmasked vector through it, and the guest's interrupts arrive while the
// VMM's eventfd reader hears none. A vector the guest masks goes back to the VMM (its pending
// bit set as the nic signals), and its unmask delivers the pending interrupt and routes it again.
// On HybridHost (simulated eventfds) no router is offered and the VMM delivers, as before.

import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LinuxHost, Vmm, type HostKernel, type VmmEvents } from '@vmmkit/core';
import { vfioUserPlugin } from '@vmmkit/backend-vfio-user';
import type { VfioPciDevice, VfioPciInterrupt } from '@vmmkit/device-vfio-pci';
import { kvmPlugin, NIC_RING_PARAM, NIC_RING_PARAMS_SIZE, nicRingGuestError, type KvmAccel } from '../src/index.js';
import { kvmMissing } from './kvm-rig.js';
import { kvmVfioUserMachine, msixCap, msixLayout, startNicServer, type NicServerProcess } from './kvm-vfio-user-machine.js';
import { loadNicGuest, NIC_GUEST, NIC_GUEST_PARAMS, NIC_RAM_BYTES, NicGuestReports, nicVmm, simClock } from './kvm-nic-machine.js';

const MSIX_GUEST = { ...NIC_GUEST, msix: { vector: 0x41, batch: 8, tables: 0x2000 } };
/** The interrupts the guest took, from its state in the parameter block. */
function guestInterrupts(vmm: Vmm): number {
  return new DataView(vmm.memory.view(NIC_GUEST_PARAMS, NIC_RING_PARAMS_SIZE).slice().buffer).getUint32(NIC_RING_PARAM.interrupts, true);
}

/** LinuxHost counting the reads of each fd: the VMM's eventfd reader shows up here. */
class ReadCountingHost extends LinuxHost {
  readonly reads = new Map<number, number>();
  override read(fd: number, buf: Uint8Array): number {
    this.reads.set(fd, (this.reads.get(fd) ?? 0) + 1);
    return super.read(fd, buf);
  }
}

describe.skipIf(kvmMissing)('MSI-X through KVM irqfds', () => {
  let dir: string | undefined;
  let server: NicServerProcess | undefined;
  afterEach(async () => {
    await server?.kill();
    server = undefined;
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('a vfio-user nic on LinuxHost: the guest\'s interrupts come through irqfd, the VMM reads none; masking falls back to the VMM and unmasking routes again', { timeout: 120_000 }, async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmmkit-irqfd-'));
    const path = join(dir, 'nic.sock');
    server = await startNicServer(path);
    const host = new ReadCountingHost();
    const warnings: VmmEvents['vfio:warning'][0][] = [];
    const m = await kvmVfioUserMachine({
      socket: path, host, ramBytes: NIC_RAM_BYTES, id: 'nic0', reports: new NicGuestReports(),
      beforeDevices: (vmm) => vmm.events.on('vfio:warning', (w) => warnings.push(w)),
    });
    const { vmm, accel, device: nic, reports } = m;
    try {
      expect(accel.msiRouter).toBe(accel.vm.msiRouter);
      expect(accel.msiRouter).toBeDefined();
      // What the VMM's eventfd reader hears (every vfio-pci interrupt event comes from it or from an unmask).
      const heard: VfioPciInterrupt[] = [];
      nic.on('interrupt', (e) => heard.push(e));
      loadNicGuest(vmm, accel, MSIX_GUEST);
      vmm.resume('test');
      await reports.until(() => (reports.checked.at(-1) ?? 0) >= 100 || reports.errors.length > 0, 60_000);
      expect(reports.errors.map(nicRingGuestError)).toEqual([]);
      expect(nic.interruptMode).toBe('msix');
      expect(nic.routedVectors).toEqual([0]);
      expect(accel.vm.msiRouter!.connected).toEqual([{ eventfd: expect.any(Number), gsi: 24 }]);
      expect(accel.vm.msiRouter!.routes.table.at(-1)).toEqual({ gsi: 24, kind: 'msi', message: { address: 0xfee0_0000n, data: 0x41 } });
      // The guest waits for an interrupt before each poll that finds packets: they all came by irqfd.
      expect(guestInterrupts(vmm)).toBeGreaterThanOrEqual(reports.checked.length);
      expect(heard).toEqual([]);
      // Not even tried: the VMM does not read a routed eventfd (KVM would win the race anyway).
      const eventfd = accel.vm.msiRouter!.connected[0]!.eventfd;
      expect(host.reads.get(eventfd) ?? 0).toBe(0);
      expect(accel.msiErrors).toEqual([]);

      // The guest masks vector 0 (done here while it stands, as its own table write would).
      vmm.pause('mask');
      await accel.pauseVcpus();
      const msix = await msixLayout(nic);
      await nic.barWrite(msix.tableBar, msix.table + 12, 4, 1n);
      expect(nic.routedVectors).toEqual([]);
      expect(accel.vm.msiRouter!.connected).toEqual([]);
      const checkedAtMask = reports.checked.at(-1)!;
      vmm.resume('masked');
      // The nic keeps signalling; the VMM reads the eventfd again and records the interrupt as pending.
      for (let i = 0; i < 500 && (await nic.barRead(msix.pbaBar, msix.pba, 8)) === 0n; i++) await new Promise((r) => setTimeout(r, 10));
      expect(await nic.barRead(msix.pbaBar, msix.pba, 8)).toBe(1n);
      expect(host.reads.get(eventfd)).toBeGreaterThan(0);
      expect(heard).toEqual([]);
      // Unmasked: the pending interrupt goes through the VMM (KVM_SIGNAL_MSI), the vector is routed again.
      await nic.barWrite(msix.tableBar, msix.table + 12, 4, 0n);
      expect(heard.map((e) => [e.mode, e.vector, e.message])).toEqual([['msix', 0, { address: 0xfee0_0000n, data: 0x41 }]]);
      expect(nic.routedVectors).toEqual([0]);
      expect(accel.vm.msiRouter!.connected[0]!.eventfd).toBe(eventfd);
      const readsWhileMasked = host.reads.get(eventfd);
      await reports.until(() => (reports.checked.at(-1) ?? 0) >= checkedAtMask + 50 || reports.errors.length > 0, 60_000);
      expect(reports.errors.map(nicRingGuestError)).toEqual([]);
      expect(heard.length).toBe(1);
      expect(host.reads.get(eventfd)).toBe(readsWhileMasked);
      expect(accel.msiErrors).toEqual([]);
      expect(accel.stopped).toEqual([]);

      // Unplugged: the device disconnects exactly its route.
      vmm.pause('unplug');
      await accel.pauseVcpus();
      await vmm.removeDevice('nic0');
      expect(accel.vm.msiRouter!.connected).toEqual([]);
      expect(accel.vm.msiRouter!.routes.msiGsis).toEqual([]);
      expect(warnings).toEqual([]);
    } finally {
      await m.close();
    }
  });

  it('a kvm device added after the nic offers it the router; removing the kvm device withdraws it and every route goes', { timeout: 60_000 }, async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmmkit-irqfd-'));
    const path = join(dir, 'nic.sock');
    server = await startNicServer(path);
    const vmm = await Vmm.create({ host: new LinuxHost(), plugins: [kvmPlugin(), vfioUserPlugin()], memory: [{ gpa: 0n, size: NIC_RAM_BYTES, name: 'low' }], memoryBacking: 'memfd' });
    const warnings: VmmEvents['vfio:warning'][0][] = [];
    vmm.events.on('vfio:warning', (w) => warnings.push(w));
    try {
      vmm.pause('setup');
      const nic = (await vmm.addDevice(`vfio-user-pci,socket=${path},id=nic0`)) as VfioPciDevice;
      // MSI-X on with vector 0 programmed and unmasked, as the guest's driver would.
      const msix = await msixLayout(nic);
      await nic.barWrite(msix.tableBar, msix.table, 8, 0xfee0_0000n);
      await nic.barWrite(msix.tableBar, msix.table + 8, 4, 0x41n);
      await nic.barWrite(msix.tableBar, msix.table + 12, 4, 0n);
      await nic.configWrite((await msixCap(nic)) + 2, 2, 0x8000);
      expect(nic.routedVectors).toEqual([]);
      const accel = (await vmm.addDevice('kvm,id=kvm0')) as KvmAccel;
      expect(nic.routedVectors).toEqual([0]);
      expect(accel.vm.msiRouter!.connected.length).toBe(1);
      const router = accel.vm.msiRouter!;
      await vmm.removeDevice('kvm0');
      expect(nic.routedVectors).toEqual([]);
      expect(router.connected).toEqual([]);
      expect(router.routes.msiGsis).toEqual([]);
      expect(nic.interruptMode).toBe('msix');
      expect(warnings).toEqual([]);
    } finally {
      await vmm.close();
    }
  });

  it('HybridHost (simulated eventfds): no router is offered and the VMM delivers the MSI-X interrupts, as before', { timeout: 60_000 }, async () => {
    const { host, vmm, accel, nic, reports } = await nicVmm();
    expect((host as HostKernel).kernelEventfds).toBeUndefined();
    const stopClock = simClock(host);
    try {
      // The VM could route, but the host's eventfds are not the kernel's.
      expect(accel.vm.msiRouter).toBeDefined();
      expect(accel.msiRouter).toBeUndefined();
      const heard: VfioPciInterrupt[] = [];
      nic.on('interrupt', (e) => heard.push(e));
      loadNicGuest(vmm, accel, MSIX_GUEST);
      vmm.resume('test');
      await reports.until(() => (reports.checked.at(-1) ?? 0) >= 40 || reports.errors.length > 0);
      expect(reports.errors.map(nicRingGuestError)).toEqual([]);
      expect(nic.interruptMode).toBe('msix');
      expect(nic.routedVectors).toEqual([]);
      expect(accel.vm.msiRouter!.connected).toEqual([]);
      expect(heard.length).toBeGreaterThan(0);
      expect(guestInterrupts(vmm)).toBeGreaterThanOrEqual(reports.checked.length);
    } finally {
      stopClock();
      await vmm.close();
    }
  });
});
