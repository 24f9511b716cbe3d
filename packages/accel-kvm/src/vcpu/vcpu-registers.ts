// A vCPU's registers through KVM_{GET,SET}_{REGS,SREGS} and its CPUID, and the one start state
// vmmkit sets up itself: 32-bit protected mode with flat segments and paging off, which lets a
// bare-metal program run without a GDT or a firmware.

import type { HostKernel } from '@vmmkit/core';
import {
  KVM_GET_REGS, KVM_GET_SREGS, KVM_SET_CPUID2, KVM_SET_REGS, KVM_SET_SREGS, kvm_regs, kvm_sregs,
} from '@vmmkit/core/uapi';
import { KvmError } from '../kvm-errors.js';

/** The general registers, decoded. */
export type Regs = ReturnType<typeof kvm_regs.decode>;
/** General registers to set (the rest are zero). */
export type RegsInput = NonNullable<Parameters<typeof kvm_regs.encode>[0]>;

/** KVM_GET_REGS. */
export function getRegs(host: HostKernel, fd: number): Regs {
  const buf = kvm_regs.encode();
  KvmError.wrap('read the registers', () => host.ioctl(fd, KVM_GET_REGS, buf));
  return kvm_regs.decode(buf);
}

/** KVM_SET_REGS with the members given (the rest are zero). */
export function setRegs(host: HostKernel, fd: number, regs: RegsInput): void {
  KvmError.wrap('set the registers', () => host.ioctl(fd, KVM_SET_REGS, kvm_regs.encode(regs)));
}

/** KVM_SET_CPUID2 with kvm_cpuid2 bytes (KvmSystem.supportedCpuid()). */
export function setCpuid(host: HostKernel, fd: number, cpuid: Uint8Array): void {
  KvmError.wrap('set the CPUID', () => host.ioctl(fd, KVM_SET_CPUID2, cpuid.slice()));
}

/**
 * Put the vCPU in 32-bit protected mode with flat 4 GiB code and data segments and paging off,
 * at `entry` with the general registers given.
 */
export function enterFlatProtectedMode(host: HostKernel, fd: number, entry: bigint, regs: Omit<RegsInput, 'rip' | 'rflags'> = {}): void {
  const sregs = kvm_sregs.encode();
  KvmError.wrap('read the special registers', () => host.ioctl(fd, KVM_GET_SREGS, sregs));
  const flat = (type: number, selector: number) => ({
    base: 0n, limit: 0xffff_ffff, selector, type, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0,
  });
  const code = flat(0xb, 0x08); // execute/read, accessed
  const data = flat(0x3, 0x10); // read/write, accessed
  const cr0 = (kvm_sregs.get(sregs, 'cr0') | 1n) & ~(1n << 31n); // PE on, PG off
  for (const seg of ['ds', 'es', 'fs', 'gs', 'ss'] as const) kvm_sregs.set(sregs, seg, data);
  kvm_sregs.set(sregs, 'cs', code);
  kvm_sregs.set(sregs, 'cr0', cr0);
  KvmError.wrap('set the special registers', () => host.ioctl(fd, KVM_SET_SREGS, sregs));
  setRegs(host, fd, { ...regs, rip: entry, rflags: 0x2n });
}
