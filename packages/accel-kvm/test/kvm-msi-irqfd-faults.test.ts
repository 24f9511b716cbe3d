// Faults in the irqfd path of a real device: a vfio-user nic on LinuxHost under KVM, its MSI-X
// vector connected, reprogrammed, masked, unmasked and disabled while KVM_SET_GSI_ROUTING or
// KVM_IRQFD fails at each of their calls in turn. No guest access fails (routing failures are
// warnings naming the vector, the GSI and the ioctl, and the VMM delivers the vector itself; a
// disconnect forced by the disable is retried at once);
// once MSI-X is off nothing is routed, and once the VM closes no fd is left.

import 'reflect-metadata';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HostError, LinuxHost, type VmmEvents } from '@vmmkit/core';
import { KVM_IRQFD, KVM_SET_GSI_ROUTING, ioctlName } from '@vmmkit/core/uapi';
import { kvmMissing } from './kvm-rig.js';
import { kvmVfioUserMachine, msixCap, msixLayout, startNicServer, type NicServerProcess } from './kvm-vfio-user-machine.js';

const EIO = 5;
const fdCount = (): number => readdirSync('/proc/self/fd').length;

/** LinuxHost failing the nth KVM routing call (KVM_SET_GSI_ROUTING or KVM_IRQFD) as the kernel would (EIO). */
class RoutingFaultHost extends LinuxHost {
  calls = 0;
  nth = 0;
  injected: string | undefined;
  override ioctl(fd: number, request: number, arg?: Uint8Array | number | bigint): number {
    if (request === KVM_SET_GSI_ROUTING || request === KVM_IRQFD) {
      if (++this.calls === this.nth) {
        this.injected = ioctlName(request, 'kvm');
        throw new HostError({ errno: EIO, syscall: 'ioctl', fd, request, ioctl: this.injected });
      }
    }
    return super.ioctl(fd, request, arg);
  }
}

describe.skipIf(kvmMissing)('faults in the irqfd path of a vfio-user nic', () => {
  let dir: string;
  let server: NicServerProcess;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmmkit-irqfd-faults-'));
    server = await startNicServer(join(dir, 'nic.sock'));
  });
  afterAll(async () => {
    await server.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Connect, update, mask, unmask, disable vector 0 with routing call `nth` failing (0: none). */
  async function run(nth: number) {
    const baseline = fdCount();
    const host = new RoutingFaultHost();
    const warnings: string[] = [];
    const m = await kvmVfioUserMachine({
      socket: join(dir, 'nic.sock'), host, id: 'nic0', beforeDevices: (vmm) => vmm.events.on('vfio:warning', (w: VmmEvents['vfio:warning'][0]) => warnings.push(w.message)),
    });
    const { accel, device: nic } = m;
    let after: { connected: number; gsis: number[]; routed: number[] };
    try {
      const msix = await msixLayout(nic);
      const control = (await msixCap(nic)) + 2;
      const ctrl = msix.table + 12;
      await nic.barWrite(msix.tableBar, msix.table, 8, 0xfee0_0000n);
      await nic.barWrite(msix.tableBar, msix.table + 8, 4, 0x41n);
      await nic.barWrite(msix.tableBar, ctrl, 4, 0n);
      host.nth = nth;
      // Every access resolves: a routing failure is never the guest's.
      await nic.configWrite(control, 2, 0x8000); // connect
      await nic.barWrite(msix.tableBar, msix.table + 8, 4, 0x42n); // update
      await nic.barWrite(msix.tableBar, ctrl, 4, 1n); // mask: disconnect
      await nic.barWrite(msix.tableBar, ctrl, 4, 0n); // unmask: connect
      await nic.configWrite(control, 2, 0); // disable: disconnect
      const router = accel.vm.msiRouter!;
      after = { connected: router.connected.length, gsis: router.routes.msiGsis, routed: nic.routedVectors };
    } finally {
      await m.close();
    }
    return { calls: host.calls, injected: host.injected, warnings, after, leaked: fdCount() - baseline };
  }

  it('each failing routing call: a warning naming the vector, GSI and ioctl; nothing routed after the disable; no fd left', { timeout: 300_000 }, async () => {
    const clean = await run(0);
    expect(clean.warnings).toEqual([]);
    // connect 2, update 1, disconnect 2, connect 2, disconnect 2.
    expect(clean.calls).toBe(9);
    expect(clean.after).toEqual({ connected: 0, gsis: [], routed: [] });
    expect(clean.leaked).toBe(0);
    for (let nth = 1; nth <= clean.calls; nth++) {
      const r = await run(nth);
      const what = `routing call ${nth} (${r.injected})`;
      expect(r.injected, what).toMatch(/^KVM_(SET_GSI_ROUTING|IRQFD)$/);
      expect(r.warnings.length, what).toBeGreaterThan(0);
      for (const w of r.warnings) {
        expect(w, what).toMatch(/the route of MSIX vector 0/);
        expect(w, what).toMatch(/GSI 2\d/);
        expect(w, what).toContain(r.injected!);
      }
      expect(r.after, what).toEqual({ connected: 0, gsis: [], routed: [] });
      expect(r.leaked, what).toBe(0);
    }
  });
});
