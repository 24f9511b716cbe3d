// The KVM VM on the real /dev/kvm: what the system fd reports, memslots that follow the address
// space, and errors that name the step, the ioctl and the errno.

import { describe, expect, it } from 'vitest';
import { AddressSpace, GuestMemory, HostError, LinuxHost } from '@vmmkit/core';
import { KvmError, KvmSystem, KvmVm } from '../src/index.js';
import { kvmMissing } from './kvm-rig.js';

// kvm_pvm is slow and the machine shared: room beyond vitest's 5 s default (a bound, not a measurement).
describe.skipIf(kvmMissing)('the KVM VM', { timeout: 30_000 }, () => {
  it('reads the MSRs to migrate and the CPUID KVM supports', () => {
    const system = KvmSystem.open(new LinuxHost());
    try {
      const msrs = system.msrIndices();
      expect(msrs.length).toBeGreaterThan(10);
      expect(msrs).toContain(0x10); // IA32_TIME_STAMP_COUNTER
      const cpuid = system.supportedCpuid();
      expect(new DataView(cpuid.buffer).getUint32(0, true)).toBeGreaterThan(5);
      expect(system.vcpuMmapSize()).toBeGreaterThanOrEqual(4096);
    } finally {
      system.close();
    }
  });

  it('adds and removes memslots as RAM sections come and go, and names the ioctl that refused one', async () => {
    const host = new LinuxHost();
    const memory = GuestMemory.allocate(host, [{ gpa: 0n, size: 2n << 20n, name: 'low' }, { gpa: 1n << 32n, size: 1n << 20n, name: 'high' }]);
    const as = new AddressSpace('system memory');
    const vm = KvmVm.create(host);
    try {
      const [low, high] = memory.blocks as [typeof memory.blocks[0], typeof memory.blocks[0]];
      await as.addSection({ kind: 'ram', start: 0n, size: low.size, block: low, offset: 0n, readonly: false });
      await vm.attach(as);
      const highSection = { kind: 'ram', start: high.gpa, size: high.size, block: high, offset: 0n, readonly: false } as const;
      await as.addSection(highSection);
      expect(vm.memslots.slots.map((s) => [s.slot, s.gpa, s.block.name])).toEqual([[0, 0n, 'low'], [1, 1n << 32n, 'high']]);
      // The same guest range again: KVM refuses an overlapping slot with EEXIST.
      const e = await as.addSection({ kind: 'ram', start: 0n, size: 1n << 20n, block: high, offset: 0n, readonly: false }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(KvmError);
      expect((e as KvmError).step).toBe("map RAM block 'high' as memslot 2");
      const cause = (e as KvmError).cause as HostError;
      expect([cause.ioctl, cause.errno]).toEqual(['KVM_SET_USER_MEMORY_REGION', 'EEXIST']);
      await as.removeSection(highSection);
      expect(vm.memslots.slots.map((s) => s.slot)).toEqual([0]);
    } finally {
      await vm.close();
      memory.free();
    }
    expect(vm.memslots.slots).toEqual([]);
  });

  it('signals an MSI only with an in-kernel irqchip, and names the ioctl KVM refused', () => {
    const host = new LinuxHost();
    const off = KvmVm.create(host, { irqchip: 'off' });
    try {
      expect(() => off.signalMsi(0xfee0_0000n, 0x41)).toThrow(/no in-kernel irqchip/);
    } finally {
      void off.close();
    }
    const on = KvmVm.create(host, { irqchip: 'on' });
    try {
      // A VM without vCPUs has no local APIC to take it: KVM answers EPERM, named.
      const e = (() => {
        try {
          on.signalMsi(0xfee0_0000n, 0x41);
        } catch (x) {
          return x;
        }
        return undefined;
      })();
      expect(e).toBeInstanceOf(KvmError);
      expect([((e as KvmError).cause as HostError).ioctl, ((e as KvmError).cause as HostError).errno]).toEqual(['KVM_SIGNAL_MSI', 'EPERM']);
    } finally {
      void on.close();
    }
  });
});
