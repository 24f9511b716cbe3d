// The guest of --kvm: the kvm device with one vCPU, and @vmmkit/accel-kvm's pages guest loaded at
// 0x1000, writing pseudo-random pages of a 256 KiB arena at 1 MiB and reporting on port 0x10.

import type { Vmm } from '@vmmkit/core';
import { PAGES_GUEST, enterFlatProtectedMode, type KvmAccel } from '@vmmkit/accel-kvm';
import { ramHash } from '@vmmkit/sim';
import { UsageError } from '../args/usage-error.js';

/** The id of the kvm device --kvm adds. */
export const KVM_DEVICE_ID = 'kvm0';
const ENTRY = 0x1000n;
const ARENA = 0x10_0000n;
const ARENA_PAGES = 64n;
/** The guest reports every 2^16 writes. */
const REPORT_MASK = 0xffffn;

const startHashes = new WeakMap<Vmm, string>();

/**
 * Realize the kvm device. A VM that boots here gets the pages guest, paused until the load
 * starts; a migration destination gets its guest from the source, and its RAM is hashed as it
 * starts, before the vCPU runs (see `ramHashAtStart`).
 * @throws UsageError when guest RAM is too small for the guest.
 */
export async function addKvmGuest(vmm: Vmm, incoming: boolean): Promise<void> {
  const low = vmm.memory.blocks[0];
  if (!low || low.gpa !== 0n || low.size < ARENA + ARENA_PAGES * 4096n) throw new UsageError('vmmkit: --kvm needs at least 2 MiB of guest RAM (-m 2M)', 'm');
  if (incoming) {
    // Registered before the device's own listener, so it runs before the vCPU does.
    vmm.events.on('vm:run-state', (e) => {
      if (e.running && !startHashes.has(vmm)) startHashes.set(vmm, ramHash(vmm.memory));
    });
  } else {
    vmm.pause('loading the guest');
  }
  const accel = (await vmm.addDevice(`kvm,id=${KVM_DEVICE_ID}`)) as KvmAccel;
  if (incoming) return;
  vmm.memory.view(ENTRY, PAGES_GUEST.byteLength).set(PAGES_GUEST);
  enterFlatProtectedMode(vmm.host, accel.vcpus[0]!.fd, ENTRY, {
    rax: BigInt(Date.now() & 0x7fff_ffff), rcx: ARENA_PAGES - 1n, rdi: ARENA, rbp: 0n, rsp: REPORT_MASK,
  });
}

/** The SHA-256 of guest RAM as a migrated KVM guest started, if it did. */
export function ramHashAtStart(vmm: Vmm): string | undefined {
  return startHashes.get(vmm);
}

/** What runs the guest on KVM: the VM's run state. Undefined for a VM without --kvm. */
export function kvmGuestRunner(vmm: Vmm): { start(): void; resume(): void; stop(): void } | undefined {
  if (vmm.device(KVM_DEVICE_ID)?.driver !== 'kvm') return undefined;
  return {
    start: () => vmm.resume('the guest starts'),
    // A migration starts the guest itself.
    resume: () => {},
    stop: () => vmm.pause('stopping'),
  };
}
