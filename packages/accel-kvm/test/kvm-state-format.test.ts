// The KVM state record: what the source encodes decodes to the same sections, and the decoder
// refuses, naming it, every way the bytes can be wrong before anything reaches KVM.

import { describe, expect, it } from 'vitest';
import {
  kvm_clock_data, kvm_cpuid2, kvm_cpuid_entry2, kvm_debugregs, kvm_irqchip, kvm_lapic_state, kvm_mp_state, kvm_msr_entry,
  kvm_msrs, kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs,
} from '@vmmkit/core/uapi';
import {
  decodeKvmState, encodeKvmState, KvmStateError, tscKhzSection, type KvmState, type VcpuSections, type VmSections,
} from '../src/index.js';

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
    TSC_KHZ: tscKhzSection(2_445_432),
  };
}
/** A PIC as a guest leaves it after ICW1-4 and a mask (base 0x20 or 0x28, level-triggered IRQs in elcr). */
const pic = (chip_id: number) => kvm_irqchip.encode({
  chip_id, pic: { irq_base: chip_id ? 0x28 : 0x20, imr: chip_id ? 0xbf : 0xfb, init4: 1, elcr_mask: chip_id ? 0xde : 0xf8, elcr: chip_id ? 0x0e : 0 },
});
const IOAPIC = kvm_irqchip.encode({
  chip_id: 2, ioapic: { base_address: 0xfec0_0000n, id: 0, irr: 1 << 2, redirtbl: Array.from({ length: 24 }, (_, i) => (BigInt(i) << 56n) | 0x1_0000n | BigInt(0x30 + i)) },
});
const PIT = kvm_pit_state2.encode({
  channels: [
    { count: 0x100, rw_mode: 3, mode: 0, read_state: 3, write_state: 3, gate: 1, count_load_time: 123_456n },
    { count: 0x1_0000, mode: 0xff, gate: 1 },
    { count: 0x533, rw_mode: 3, mode: 3, read_state: 3, write_state: 3 },
  ],
});
const VM: VmSections = { CLOCK: kvm_clock_data.encode({ clock: 123_456_789n, flags: 2 }), PIC_MASTER: pic(0), PIC_SLAVE: pic(1), IOAPIC, PIT };
const STATE: KvmState = { vm: VM, vcpus: [vcpu(0), vcpu(1)] };
/** vCPU sections begin after the VM's five. */
const V0 = 5;
const V1 = V0 + 11;

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
    expect(back.vm).toEqual(STATE.vm);
    expect(back.vcpus).toEqual(STATE.vcpus);
  });

  it('carries FPU instead of XSAVE, and no irqchip, PIT, LAPIC or TSC rate where the source had none', () => {
    const { XSAVE: _x, LAPIC: _l, TSC_KHZ: _t, ...rest } = vcpu(3);
    const state = { vm: { CLOCK: VM.CLOCK }, vcpus: [{ ...rest, FPU: filled(416, 9) }] };
    const back = decodeKvmState(encodeKvmState(state), 1);
    expect(back.vcpus[0]).toEqual(state.vcpus[0]);
    expect(back.vm).toEqual({ CLOCK: VM.CLOCK });
  });

  const cases: [string, () => Uint8Array, number, RegExp][] = [
    ['a short buffer', () => new Uint8Array(10), 2, /shorter than the header/],
    ['another magic', () => edited((b) => { b[0] = 0x41; }), 2, /bad magic/],
    ['another version', () => edited((_, v) => v.setUint16(8, 3, true)), 2, /version 3, this vmmkit reads 2/],
    ['a version 1 record (no irqchip, PIT or TSC rate)', () => edited((_, v) => v.setUint16(8, 1, true)), 2, /version 1 predates the irqchip, PIT and TSC-frequency sections/],
    ['another vCPU count', () => encodeKvmState(STATE), 1, /2 vCPUs on the source, 1 here/],
    ['an unknown tag', () => edited((b, v) => v.setUint16(sectionAt(b, V0 + 2), 99, true)), 2, /unknown tag 99/],
    ['a section of the wrong length', () => edited((b, v) => {
      const at = sectionAt(b, V0 + 1); // vCPU 0's REGS
      v.setUint32(at + 4, kvm_regs.size - 8, true);
      return Uint8Array.from([...b.subarray(0, at + 8 + kvm_regs.size - 8), ...b.subarray(at + 8 + kvm_regs.size)]);
    }), 2, /^KVM state: REGS of 136 bytes has the wrong length/],
    ['a section cut off', () => encodeKvmState(STATE).subarray(0, 2000), 2, /cut off/],
    ['bytes after the last section', () => Uint8Array.from([...encodeKvmState(STATE), 0]), 2, /1 bytes after the last section/],
    ['a vCPU section for the VM', () => edited((b, v) => v.setUint16(sectionAt(b, 0) + 2, 0, true)), 2, /CLOCK belongs to the VM/],
    ['a section for a vCPU that does not exist', () => edited((b, v) => v.setUint16(sectionAt(b, V0 + 1) + 2, 7, true)), 2, /for vCPU 7 of 2/],
    // vCPU 1's REGS made vCPU 0's.
    ['a section twice', () => edited((b, v) => v.setUint16(sectionAt(b, V1 + 1) + 2, 0, true)), 2, /REGS of vCPU 0 appears twice/],
    ['an MP state that is not x86', () => edited((b) => {
      const at = sectionAt(b, V0 + 7); // vCPU 0's MP_STATE
      b[at + 8] = 9;
    }), 2, /MP_STATE of vCPU 0 is 9/],
    ['MSRs whose count disagrees with their length', () => edited((b, v) => v.setUint32(sectionAt(b, V0 + 5) + 8, 2, true)), 2, /MSRS of vCPU 0 does not match/],
    ['CPUID whose count disagrees with its length', () => edited((b, v) => v.setUint32(sectionAt(b, V0) + 8, 1, true)), 2, /CPUID of vCPU 0 does not match/],
    // The VM's devices: section 1 the master PIC, 2 the slave, 3 the IOAPIC, 4 the PIT.
    ['a PIC of another chip id', () => edited((b, v) => v.setUint32(sectionAt(b, 1) + 8, 1, true)), 2, /PIC_MASTER of the VM: chip id 1, PIC_MASTER is 0/],
    ['an IOAPIC carried as a PIC', () => edited((b, v) => v.setUint32(sectionAt(b, 2) + 8, 2, true)), 2, /PIC_SLAVE of the VM: chip id 2/],
    ['an irqchip cut short', () => edited((b, v) => {
      const at = sectionAt(b, 1);
      v.setUint32(at + 4, 16 + 8, true); // chip id, pad and the PIC itself, without the rest of the union
      return Uint8Array.from([...b.subarray(0, at + 8 + 24), ...b.subarray(at + 8 + kvm_irqchip.size)]);
    }), 2, /PIC_MASTER of 24 bytes has the wrong length/],
    ['an IOAPIC with more redirection entries than 24', () => edited((b) => {
      b[sectionAt(b, 3) + 8 + 8 + 216] = 0x31; // a 25th entry's vector
    }), 2, /IOAPIC of the VM: bytes after its 24 redirection entries/],
    ['an IOAPIC pending on a pin it does not have', () => edited((b, v) => v.setUint32(sectionAt(b, 3) + 8 + 8 + 16, 1 << 24, true)), 2, /IRR 0x1000000 has pins beyond 24/],
    ['an IOAPIC somewhere KVM does not answer', () => edited((b, v) => v.setBigUint64(sectionAt(b, 3) + 8 + 8, 0xfec0_1000n, true)), 2, /base 0xfec01000/],
    ['a PIC mid-way through a step its ICW sequence lacks', () => edited((b) => {
      b[sectionAt(b, 1) + 8 + 8 + 9] = 4; // init_state
    }), 2, /PIC_MASTER of the VM: init_state 4/],
    ['a PIC level-triggering IRQs outside its mask', () => edited((b) => {
      b[sectionAt(b, 2) + 8 + 8 + 14] = 0x01; // elcr: IRQ 8, which the slave's mask 0xde excludes
    }), 2, /elcr 0x1 sets IRQs outside its mask 0xde/],
    ['a PIT counter in a mode the 8254 lacks', () => edited((b) => {
      b[sectionAt(b, 4) + 8 + 24 + 13] = 9; // channel 1's mode
    }), 2, /PIT of the VM: channel 1: mode 9/],
    ['a PIT with unknown flags', () => edited((b, v) => v.setUint32(sectionAt(b, 4) + 8 + 72, 4, true)), 2, /PIT of the VM: flags 0x4/],
    ['a PIT without the irqchip', () => encodeKvmState({ vm: { CLOCK: VM.CLOCK, PIT }, vcpus: STATE.vcpus.map(({ LAPIC: _l, ...v }) => v) }), 2, /PIT without the irqchip/],
    ['an irqchip without its IOAPIC', () => encodeKvmState({ vm: { CLOCK: VM.CLOCK, PIC_MASTER: pic(0), PIC_SLAVE: pic(1) }, vcpus: STATE.vcpus }), 2, /the irqchip has PIC_MASTER, PIC_SLAVE only/],
    ['an in-kernel irqchip with a vCPU lacking its LAPIC', () => encodeKvmState({ vm: VM, vcpus: [vcpu(0), (({ LAPIC: _l, ...v }) => v)(vcpu(1))] }), 2, /LAPIC of vCPU 1 is missing/],
    ['a TSC rate of 0 kHz', () => edited((b, v) => v.setUint32(sectionAt(b, V0 + 10) + 8, 0, true)), 2, /TSC_KHZ of vCPU 0: a TSC of 0 kHz/],
    ['a TSC rate for one vCPU of two', () => encodeKvmState({ vm: VM, vcpus: [vcpu(0), (({ TSC_KHZ: _t, ...v }) => v)(vcpu(1))] }), 2, /TSC_KHZ for 1 of 2 vCPUs/],
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
    expect(() => decodeKvmState(encodeKvmState({ vm: VM, vcpus: [rest] }), 1)).toThrow(/REGS of vCPU 0 is missing/);
  });

  it('keeps MSR entries as the kernel lays them out', () => {
    const back = decodeKvmState(encodeKvmState(STATE), 2).vcpus[0]!.MSRS!;
    expect(kvm_msrs.readFlex(back, 3).map((e) => e.index)).toEqual([0x10, 0x1b, 0xc0000080]);
    expect(back.byteLength).toBe(kvm_msrs.size + 3 * kvm_msr_entry.size);
    expect(kvm_cpuid_entry2.size).toBe(40);
  });
});
