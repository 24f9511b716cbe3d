// VMMs with KVM for the migration tests: the kvm device and migration plugins, guest RAM, and
// the pages guest loaded and started on the source.

import 'reflect-metadata';
import { createHash } from 'node:crypto';
import { LinuxHost, Vmm, type GuestMemory, type HostKernel } from '@vmmkit/core';
import { migrationPlugin } from '@vmmkit/migration';
import { enterFlatProtectedMode, kvmPlugin, type KvmAccel } from '../src/index.js';
import { PAGES_GUEST } from '../src/guests/pages-guest.js';
import { ARENA, GUEST_CODE, GuestReports } from './kvm-rig.js';

export const RAM_BYTES = 8n << 20n;

/** A VMM with KVM (`device`: its -device string, default `kvm,id=kvm0`); the accelerator is realized paused, with its reports attached. */
export async function kvmVmm(options: { incoming?: boolean; host?: HostKernel; beforeAccel?: (vmm: Vmm) => void; device?: string } = {}) {
  const host = options.host ?? new LinuxHost();
  const vmm = await Vmm.create({
    host, plugins: [kvmPlugin(), migrationPlugin()], memory: [{ gpa: 0n, size: RAM_BYTES, name: 'low' }], incoming: options.incoming,
  });
  try {
    // The guest is set up before any vCPU runs.
    vmm.pause('setup');
    options.beforeAccel?.(vmm);
    const accel = (await vmm.addDevice(options.device ?? 'kvm,id=kvm0')) as KvmAccel;
    const reports = new GuestReports();
    reports.attach(accel.io);
    return { host, vmm, accel, reports };
  } catch (e) {
    await vmm.close();
    throw e;
  }
}

/** Load the pages guest into `vmm`'s RAM and point vCPU 0 at it. */
export function loadPagesGuest(vmm: Vmm, accel: KvmAccel, o: { seed: number; arenaPages: number; reportMask: number }): void {
  vmm.memory.view(GUEST_CODE, PAGES_GUEST.byteLength).set(PAGES_GUEST);
  enterFlatProtectedMode(vmm.host, accel.vcpus[0]!.fd, GUEST_CODE, { rax: BigInt(o.seed), rcx: BigInt(o.arenaPages - 1), rdi: ARENA, rbp: 0n, rsp: BigInt(o.reportMask) });
}

/** A digest of all guest RAM. */
export function ramDigest(memory: GuestMemory): string {
  const h = createHash('sha256');
  for (const b of memory.blocks) h.update(b.mapping.bytes);
  return h.digest('hex');
}
