// The KVM state record: what the source encodes decodes to the same sections, and the decoder
// refuses, naming it, every way the bytes can be wrong before anything reaches KVM.

import { describe, expect, it } from 'vitest';
import {
  kvm_clock_data, kvm_cpuid2, kvm_cpuid_entry2, kvm_debugregs, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_msrs,
  kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs,
} from '@vmmkit/core/uapi';
import { decodeKvmState, encodeKvmState, KvmStateError, type KvmState, type VcpuSections } from '../src/index.js';

const filled = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

function vcpu(seed: number): VcpuSections {
  return {
    CPUID: kvm_cpuid2.encode({ nent: 2, entries: [{ function: 0, eax: 0xd }, { function: 1, ebx: seed << 24 }] }),
    REGS: filled(kvm_regs.size, seed),
    SREGS: filled(kvm_sregs.size, seed + 1),
    XSAVE: filled(4096, seed + 2),
    XCRS: filled(kvm_xcrs.size, seed + 3),
    MSRS: kvm_msrs.encode({ nmsrs: 3, entries: [{ index: 0x10, data: 5n }, { index: 0x1b, data: 0xfee00900n }, { index: 0xc0000080, data: 0n }] }),
    EVENTS: filled(kvm_vcpu_events.size, seed + 4),
    MP_STATE: kvm_mp_state.encode({ mp_state: 0 }),
    DEBUGREGS: filled(kvm_debugregs.size, seed + 5),
    LAPIC: filled(kvm_lapic_state.size, seed + 6),
  };
}
const STATE: KvmState = { clock: kvm_clock_data.encode({ clock: 123_456_789n, flags: 2 }), vcpus: [vcpu(0), vcpu(1)] };

/** The encoded state with `edit` applied to a copy. */
function edited(edit: (bytes: Uint8Array, view: DataView) => Uint8Array | void): Uint8Array {
  const bytes = encodeKvmState(STATE);
  return edit(bytes, new DataView(bytes.buffer)) ?? bytes;
}

/** Offset of the header of section `n` (0 is the clock). */
function sectionAt(bytes: Uint8Array, n: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  let at = 16;
  for (let i = 0; i < n; i++) at += 8 + view.getUint32(at + 4, true);
  return at;
}

describe('the KVM state record', () => {
  it('decodes to what was encoded', () => {
    const back = decodeKvmState(encodeKvmState(STATE), 2);
    expect(back.clock).toEqual(STATE.clock);
    expect(back.vcpus).toEqual(STATE.vcpus);
  });

  it('carries FPU instead of XSAVE, and no LAPIC without an in-kernel irqchip', () => {
    const { XSAVE: _x, LAPIC: _l, ...rest } = vcpu(3);
    const state = { clock: STATE.clock, vcpus: [{ ...rest, FPU: filled(416, 9) }] };
    expect(decodeKvmState(encodeKvmState(state), 1).vcpus[0]).toEqual(state.vcpus[0]);
  });

  const cases: [string, () => Uint8Array, number, RegExp][] = [
    ['a short buffer', () => new Uint8Array(10), 2, /shorter than the header/],
    ['another magic', () => edited((b) => { b[0] = 0x41; }), 2, /bad magic/],
    ['another version', () => edited((_, v) => v.setUint16(8, 2, true)), 2, /version 2/],
    ['another vCPU count', () => encodeKvmState(STATE), 1, /2 vCPUs on the source, 1 here/],
    ['an unknown tag', () => edited((b, v) => v.setUint16(sectionAt(b, 3), 99, true)), 2, /unknown tag 99/],
    ['a section of the wrong length', () => edited((b, v) => {
      const at = sectionAt(b, 2); // vCPU 0's REGS
      v.setUint32(at + 4, kvm_regs.size - 8, true);
      return Uint8Array.from([...b.subarray(0, at + 8 + kvm_regs.size - 8), ...b.subarray(at + 8 + kvm_regs.size)]);
    }), 2, /^KVM state: REGS of 136 bytes has the wrong length/],
    ['a section cut off', () => encodeKvmState(STATE).subarray(0, 2000), 2, /cut off/],
    ['bytes after the last section', () => Uint8Array.from([...encodeKvmState(STATE), 0]), 2, /1 bytes after the last section/],
    ['a vCPU section for the VM', () => edited((b, v) => v.setUint16(sectionAt(b, 0) + 2, 0, true)), 2, /CLOCK belongs to the VM/],
    ['a section for a vCPU that does not exist', () => edited((b, v) => v.setUint16(sectionAt(b, 2) + 2, 7, true)), 2, /for vCPU 7 of 2/],
    // vCPU 1's REGS (section 12) made vCPU 0's.
    ['a section twice', () => edited((b, v) => v.setUint16(sectionAt(b, 12) + 2, 0, true)), 2, /REGS of vCPU 0 appears twice/],
    ['an MP state that is not x86', () => edited((b) => {
      const at = sectionAt(b, 8); // vCPU 0's MP_STATE
      b[at + 8] = 9;
    }), 2, /MP_STATE of vCPU 0 is 9/],
    ['MSRs whose count disagrees with their length', () => edited((b, v) => v.setUint32(sectionAt(b, 6) + 8, 2, true)), 2, /MSRS of vCPU 0 does not match/],
    ['CPUID whose count disagrees with its length', () => edited((b, v) => v.setUint32(sectionAt(b, 1) + 8, 1, true)), 2, /CPUID of vCPU 0 does not match/],
  ];
  it.for(cases)('refuses %s', ([, bytes, vcpus, message]) => {
    let error: unknown;
    try {
      decodeKvmState(bytes(), vcpus);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(KvmStateError);
    expect((error as Error).message).toMatch(message);
  });

  it('refuses a vCPU without registers', () => {
    const { REGS: _r, ...rest } = vcpu(0);
    expect(() => decodeKvmState(encodeKvmState({ clock: STATE.clock, vcpus: [rest] }), 1)).toThrow(/REGS of vCPU 0 is missing/);
  });

  it('keeps MSR entries as the kernel lays them out', () => {
    const back = decodeKvmState(encodeKvmState(STATE), 2).vcpus[0]!.MSRS!;
    expect(kvm_msrs.readFlex(back, 3).map((e) => e.index)).toEqual([0x10, 0x1b, 0xc0000080]);
    expect(back.byteLength).toBe(kvm_msrs.size + 3 * kvm_msr_entry.size);
    expect(kvm_cpuid_entry2.size).toBe(40);
  });
});
