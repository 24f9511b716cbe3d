// A vCPU's TSC frequency across a migration. The guest calibrated its clocks against the TSC
// rate it booted with (kvmclock, TSC deadline timers, its own calibration loop): on a host
// whose TSC runs at another rate its time would run fast or slow for good. The source carries
// each vCPU's rate (KVM_GET_TSC_KHZ); the destination keeps it when its own is the same, sets
// it (KVM_SET_TSC_KHZ) where KVM can scale the TSC (KVM_CAP_TSC_CONTROL), and otherwise
// refuses the state before anything is set (QEMU's kvm_arch_set_tsc_khz decides the same way;
// it only warns unless the user pinned tsc-frequency, vmmkit always refuses).
//
// Found on kvm_pvm (the software KVM of these machines): KVM_CAP_GET_TSC_KHZ 1,
// KVM_CAP_TSC_CONTROL 0, KVM_CAP_VM_TSC_CONTROL 0; every VM reads the host's 2445432 kHz. Its
// KVM_SET_TSC_KHZ takes a rate above the host's even so (the kernel then "catches up" the TSC at
// each guest entry, a coarse emulation, not scaling) and refuses one below with EINVAL: vmmkit
// follows the capability and does not call it without KVM_CAP_TSC_CONTROL.

import { HostError, type HostKernel } from '@vmmkit/core';
import { KVM_GET_TSC_KHZ, KVM_SET_TSC_KHZ } from '@vmmkit/core/uapi';
import { KvmError } from '../kvm-errors.js';
import { KvmStateError } from './kvm-state-format.js';

/** What this host can do about TSC rates. */
export interface TscCaps {
  /** KVM_GET_TSC_KHZ works (KVM_CAP_GET_TSC_KHZ). */
  readonly read: boolean;
  /** KVM_SET_TSC_KHZ scales a vCPU's TSC (KVM_CAP_TSC_CONTROL). */
  readonly scale: boolean;
}

/** The TSC rate of vCPU `index` (fd `fd`) in kHz. */
export function readTscKhz(host: HostKernel, fd: number, index: number): number {
  return call(`vCPU ${index}: read the TSC frequency`, () => host.ioctl(fd, KVM_GET_TSC_KHZ));
}

/** Make vCPU `index`'s TSC run at `khz`. */
export function setTscKhz(host: HostKernel, fd: number, index: number, khz: number): void {
  call(`vCPU ${index}: set the TSC frequency to ${khz} kHz`, () => host.ioctl(fd, KVM_SET_TSC_KHZ, khz));
}

/**
 * The rate vCPU `index` must be set to for the source's `theirs` kHz: undefined when it runs at
 * that rate already (`mine`, undefined where this host cannot tell).
 * @throws KvmStateError when it differs (or cannot be read) and this host cannot scale the TSC.
 */
export function tscKhzToSet(index: number, theirs: number, mine: number | undefined, caps: TscCaps): number | undefined {
  if (mine === theirs) return undefined;
  if (caps.scale) return theirs;
  const here = mine === undefined ? 'this host cannot read its own (no KVM_CAP_GET_TSC_KHZ)' : `it runs at ${mine} kHz here`;
  throw new KvmStateError(`KVM state: vCPU ${index}'s TSC ran at ${theirs} kHz on the source, ${here}, and KVM cannot scale it (no KVM_CAP_TSC_CONTROL): the guest's clock would run at another rate`);
}

function call(step: string, body: () => number): number {
  try {
    return body();
  } catch (e) {
    if (e instanceof HostError) throw new KvmError(step, e.message, { cause: e });
    throw e;
  }
}
