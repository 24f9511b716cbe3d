// The kvm device of a VMM: its vCPUs follow the VM's run state, a vCPU's state copies into a
// second VM exactly, a CPUID that differs is refused, and a guest that triple-faults stops its
// vCPU with a typed error and pauses the VM.

import { describe, expect, it } from 'vitest';
import { ConfigError } from '@vmmkit/core';
import { decodeKvmState, encodeKvmState, KvmStateError, enterFlatProtectedMode, getRegs, type KvmAccel } from '../src/index.js';
import { kvmMissing } from './kvm-rig.js';
import { kvmVmm, loadPagesGuest } from './kvm-machine.js';

// kvm_pvm is slow and the machine shared: room beyond vitest's 5 s default (a bound, not a measurement).
describe.skipIf(kvmMissing)('the kvm device', { timeout: 30_000 }, () => {
  it('runs its vCPUs only while the VM runs', async () => {
    const { vmm, accel, reports } = await kvmVmm();
    try {
      loadPagesGuest(vmm, accel, { seed: 2, arenaPages: 64, reportMask: 0xff });
      // Paused: the worker waits to be told to enter the guest.
      expect(['starting', 'parked']).toContain(accel.vcpus[0]!.state);
      vmm.resume('test');
      await reports.until(() => reports.progress.length >= 3);
      vmm.pause('test');
      await accel.quiesced();
      expect(accel.vcpus[0]!.state).toBe('parked');
      const at = reports.progress.length;
      await new Promise((r) => setTimeout(r, 30));
      expect(reports.progress.length).toBe(at);
    } finally {
      await vmm.close();
    }
  });

  it('copies a vCPU\'s state into a second VM, and the copy reads back the same', async () => {
    const a = await kvmVmm();
    const b = await kvmVmm({ incoming: true });
    try {
      loadPagesGuest(a.vmm, a.accel, { seed: 3, arenaPages: 64, reportMask: 0xff });
      a.vmm.resume('test');
      await a.reports.until(() => a.reports.progress.length >= 2);
      a.vmm.pause('test');
      await a.accel.quiesced();
      const saved = a.accel.saveState();
      b.accel.loadState(saved);
      const src = decodeKvmState(saved, 1).vcpus[0]!;
      const dst = decodeKvmState(b.accel.saveState(), 1).vcpus[0]!;
      for (const name of ['CPUID', 'REGS', 'SREGS', 'XCRS', 'MP_STATE', 'DEBUGREGS', 'XSAVE'] as const) {
        expect(dst[name], name).toEqual(src[name]);
      }
      expect(getRegs(b.host, b.accel.vcpus[0]!.fd).rsi).toBe(getRegs(a.host, a.accel.vcpus[0]!.fd).rsi);
    } finally {
      await a.vmm.close();
      await b.vmm.close();
    }
  });

  it('refuses state from a vCPU that had another CPUID, before setting anything', async () => {
    const a = await kvmVmm();
    const b = await kvmVmm({ incoming: true });
    try {
      const state = decodeKvmState(a.accel.saveState(), 1);
      const cpuid = state.vcpus[0]!.CPUID!.slice();
      cpuid[8 + 12] ^= 1; // the first entry's eax
      const other = encodeKvmState({ vm: state.vm, vcpus: [{ ...state.vcpus[0]!, CPUID: cpuid }] });
      const before = b.accel.saveState();
      expect(() => b.accel.loadState(other)).toThrow(KvmStateError);
      expect(decodeKvmState(b.accel.saveState(), 1).vcpus[0]!.REGS).toEqual(decodeKvmState(before, 1).vcpus[0]!.REGS);
    } finally {
      await a.vmm.close();
      await b.vmm.close();
    }
  });

  it('a guest that triple-faults stops its vCPU (VcpuStoppedError, shutdown) and pauses the VM', async () => {
    const { vmm, accel } = await kvmVmm();
    try {
      // ud2 with no usable IDT: #UD, #DF, then a triple fault.
      vmm.memory.view(0x1000n, 2).set([0x0f, 0x0b]);
      enterFlatProtectedMode(vmm.host, accel.vcpus[0]!.fd, 0x1000n);
      vmm.resume('test');
      const deadline = Date.now() + 10_000;
      while (accel.stopped.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(accel.stopped.map((e) => [e.name, e.vcpu, e.reason])).toEqual([['VcpuStoppedError', 0, 'shutdown']]);
      expect(vmm.running).toBe(false);
      expect(accel.vcpus[0]!.state).toBe('stopped');
    } finally {
      await vmm.close();
    }
  });

  it('refuses vcpus=0 and a second accelerator, naming the option', async () => {
    const { vmm } = await kvmVmm();
    try {
      await expect(vmm.addDevice('kvm,id=kvm1')).rejects.toThrow(/the VM has an accelerator already \('kvm0'\)/);
      await vmm.removeDevice('kvm0');
      const e = await vmm.addDevice('kvm,id=kvm1,vcpus=0').catch((x: unknown) => x);
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).option).toBe('vcpus');
      // With the first one gone, another can be realized.
      await vmm.addDevice('kvm,id=kvm2,vcpus=2');
    } finally {
      await vmm.close();
    }
  });

  it('carries every vCPU of a VM with two, each with its own APIC ID', async () => {
    const { vmm } = await kvmVmm();
    try {
      await vmm.removeDevice('kvm0');
      const accel = (await vmm.addDevice('kvm,id=kvm0,vcpus=2')) as KvmAccel;
      const state = decodeKvmState(accel.saveState(), 2);
      expect(state.vcpus).toHaveLength(2);
      const apicId = (cpuid: Uint8Array, fn: number, reg: 'ebx' | 'edx') => {
        const view = new DataView(cpuid.buffer, cpuid.byteOffset);
        for (let i = 0; i < view.getUint32(0, true); i++) {
          const at = 8 + i * 40;
          if (view.getUint32(at, true) === fn) return view.getUint32(at + (reg === 'ebx' ? 16 : 24), true);
        }
        return undefined;
      };
      expect(state.vcpus.map((v) => apicId(v.CPUID!, 1, 'ebx')! >>> 24)).toEqual([0, 1]);
    } finally {
      await vmm.close();
    }
  });
});
