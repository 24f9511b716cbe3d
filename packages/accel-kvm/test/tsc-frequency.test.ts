// What the destination does about the source's TSC rate: nothing when its vCPU runs at it, set it
// where KVM scales the TSC, refuse otherwise; and the ioctls on a real vCPU, with KvmError naming
// the step and the ioctl when the kernel refuses.

import { describe, expect, it } from 'vitest';
import { HostError, LinuxHost } from '@vmmkit/core';
import { KvmError, KvmStateError, KvmVcpu, KvmVm, IoBus, readTscKhz, setTscKhz, tscKhzToSet } from '../src/index.js';
import { kvmMissing } from './kvm-rig.js';

describe('the TSC rate a vCPU must be given', () => {
  it('is none when the vCPU runs at the source\'s rate already, scaling or not', () => {
    expect(tscKhzToSet(0, 2_445_432, 2_445_432, { read: true, scale: false })).toBeUndefined();
    expect(tscKhzToSet(0, 2_445_432, 2_445_432, { read: true, scale: true })).toBeUndefined();
  });

  it('is the source\'s where KVM scales the TSC, even when this host cannot read its own', () => {
    expect(tscKhzToSet(1, 3_000_000, 2_445_432, { read: true, scale: true })).toBe(3_000_000);
    expect(tscKhzToSet(1, 3_000_000, undefined, { read: false, scale: true })).toBe(3_000_000);
  });

  it('is refused, naming both rates, where KVM cannot scale it', () => {
    expect(() => tscKhzToSet(2, 2_000_000, 2_445_432, { read: true, scale: false }))
      .toThrow(new KvmStateError("KVM state: vCPU 2's TSC ran at 2000000 kHz on the source, it runs at 2445432 kHz here, and KVM cannot scale it (no KVM_CAP_TSC_CONTROL): the guest's clock would run at another rate"));
    expect(() => tscKhzToSet(0, 2_000_000, undefined, { read: false, scale: false })).toThrow(/this host cannot read its own \(no KVM_CAP_GET_TSC_KHZ\)/);
  });
});

describe.skipIf(kvmMissing)('the TSC rate of a real vCPU', () => {
  it('reads back what KVM_SET_TSC_KHZ set, and a refused rate names the ioctl and errno', async () => {
    const host = new LinuxHost();
    const vm = KvmVm.create(host);
    const vcpu = KvmVcpu.create(host, vm.fd, 0, vm.system.vcpuMmapSize(), new IoBus(), () => undefined);
    try {
      const khz = readTscKhz(host, vcpu.fd, 0);
      expect(khz).toBeGreaterThan(100_000);
      // Its own rate again is always accepted (within the kernel's tolerance, no scaling needed).
      setTscKhz(host, vcpu.fd, 0, khz);
      expect(readTscKhz(host, vcpu.fd, 0)).toBe(khz);
      // Half the host's rate needs scaling down: refused where KVM has no TSC scaling (EINVAL, as
      // on kvm_pvm); set where it has.
      let error: unknown;
      try {
        setTscKhz(host, vcpu.fd, 0, Math.floor(khz / 2));
      } catch (e) {
        error = e;
      }
      if (error === undefined) {
        expect(readTscKhz(host, vcpu.fd, 0)).toBe(Math.floor(khz / 2));
      } else {
        expect(error).toBeInstanceOf(KvmError);
        expect((error as KvmError).step).toBe(`vCPU 0: set the TSC frequency to ${Math.floor(khz / 2)} kHz`);
        expect([((error as KvmError).cause as HostError).ioctl, ((error as KvmError).cause as HostError).errno]).toEqual(['KVM_SET_TSC_KHZ', 'EINVAL']);
      }
    } finally {
      await vcpu.close();
      await vm.close();
    }
  });
});
