// The KVM state a migration carries, version 2: the VM's clock and (with an in-kernel irqchip)
// its two PICs, its IOAPIC and its PIT; then each vCPU's CPUID, TSC frequency, registers,
// FPU/XSAVE, XCRs, MSRs, events, MP state, debug registers and local APIC, as sections of a
// versioned, length-checked binary (little-endian), which the destination validates completely
// before it sets anything.
//
// Version 1 (no irqchip, PIT or TSC frequency) is refused, not read: the devices a guest with
// an in-kernel irqchip programmed would come up reset on the destination (every IOAPIC pin
// masked, the PICs uninitialised, the PIT stopped) with no error, losing its interrupts and
// its timer; and with no TSC frequency the destination could not tell whether the guest's
// clock would run at another rate. No vmmkit release wrote version 1 to keep readable.
//
//   header:  magic "VMMKVMST" (8), version u16, vcpus u16, sections u32
//   section: tag u16, vcpu u16 (0xffff for the VM), length u32, then `length` bytes

import { VmmError } from '@vmmkit/core';
import { IRQCHIPS, irqchipProblem, pitProblem } from './vm-device-checks.js';
import {
  kvm_clock_data, kvm_cpuid2, kvm_cpuid_entry2, kvm_debugregs, kvm_fpu, kvm_irqchip, kvm_lapic_state, kvm_mp_state,
  kvm_msr_entry, kvm_msrs, kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs, KVM_MP_STATE_SIPI_RECEIVED,
} from '@vmmkit/core/uapi';

export const KVM_STATE_MAGIC = 'VMMKVMST';
export const KVM_STATE_VERSION = 2;
const HEADER = 16;
const SECTION_HEADER = 8;
/** The vcpu field of a section that belongs to the VM. */
export const VM_SECTION = 0xffff;
/** Most MSRs one vCPU carries (KVM lists about 100 on x86). */
const MAX_MSRS = 4096;
/** The largest XSAVE area a vCPU carries (KVM_CAP_XSAVE2 sizes it; AMX needs about 11 KiB). */
const MAX_XSAVE = 64 * 1024;

/**
 * The sections: their tag, whether they belong to the VM (else to a vCPU), the lengths they
 * may have, and (for the devices) what else must hold of their bytes.
 */
export const SECTIONS = {
  CLOCK: { tag: 1, vm: true, valid: (n: number) => n === kvm_clock_data.size },
  CPUID: { tag: 2, vm: false, valid: (n: number) => n >= kvm_cpuid2.size && (n - kvm_cpuid2.size) % kvm_cpuid_entry2.size === 0 },
  REGS: { tag: 3, vm: false, valid: (n: number) => n === kvm_regs.size },
  SREGS: { tag: 4, vm: false, valid: (n: number) => n === kvm_sregs.size },
  FPU: { tag: 5, vm: false, valid: (n: number) => n === kvm_fpu.size },
  XSAVE: { tag: 6, vm: false, valid: (n: number) => n >= 4096 && n <= MAX_XSAVE && n % 4 === 0 },
  XCRS: { tag: 7, vm: false, valid: (n: number) => n === kvm_xcrs.size },
  MSRS: { tag: 8, vm: false, valid: (n: number) => n >= kvm_msrs.size && (n - kvm_msrs.size) % kvm_msr_entry.size === 0 && (n - kvm_msrs.size) / kvm_msr_entry.size <= MAX_MSRS },
  EVENTS: { tag: 9, vm: false, valid: (n: number) => n === kvm_vcpu_events.size },
  MP_STATE: { tag: 10, vm: false, valid: (n: number) => n === kvm_mp_state.size },
  DEBUGREGS: { tag: 11, vm: false, valid: (n: number) => n === kvm_debugregs.size },
  LAPIC: { tag: 12, vm: false, valid: (n: number) => n === kvm_lapic_state.size },
  // Each a kvm_irqchip as KVM_GET_IRQCHIP gave it (its chip id included, and checked).
  PIC_MASTER: { tag: 13, vm: true, valid: (n: number) => n === kvm_irqchip.size, problem: (b: Uint8Array) => irqchipProblem('PIC_MASTER', b) },
  PIC_SLAVE: { tag: 14, vm: true, valid: (n: number) => n === kvm_irqchip.size, problem: (b: Uint8Array) => irqchipProblem('PIC_SLAVE', b) },
  IOAPIC: { tag: 15, vm: true, valid: (n: number) => n === kvm_irqchip.size, problem: (b: Uint8Array) => irqchipProblem('IOAPIC', b) },
  PIT: { tag: 16, vm: true, valid: (n: number) => n === kvm_pit_state2.size, problem: pitProblem },
  /** The vCPU's TSC frequency in kHz (KVM_GET_TSC_KHZ), a u32. */
  TSC_KHZ: { tag: 17, vm: false, valid: (n: number) => n === 4, problem: (b: Uint8Array) => (tscKhzOf(b) === 0 ? 'a TSC of 0 kHz' : undefined) },
} as const satisfies Record<string, { tag: number; vm: boolean; valid: (n: number) => boolean; problem?: (b: Uint8Array) => string | undefined }>;
export type SectionName = keyof typeof SECTIONS;
type VmOwned<N extends SectionName> = (typeof SECTIONS)[N]['vm'] extends true ? N : never;
/** The sections of the VM. */
export type VmSectionName = { [N in SectionName]: VmOwned<N> }[SectionName];
/** The sections of a vCPU. */
export type VcpuSectionName = Exclude<SectionName, VmSectionName>;
const BY_TAG = new Map<number, SectionName>(Object.entries(SECTIONS).map(([name, s]) => [s.tag, name as SectionName]));

/** The state of one vCPU: its sections by name (those the host has). */
export type VcpuSections = Partial<Record<VcpuSectionName, Uint8Array>>;
/** The VM's own state: its clock, and the irqchip's three chips and the PIT where it has them in the kernel. */
export type VmSections = { readonly CLOCK: Uint8Array } & Partial<Record<Exclude<VmSectionName, 'CLOCK'>, Uint8Array>>;

/** A TSC_KHZ section's value. */
export function tscKhzOf(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
}
/** A TSC_KHZ section of `khz`. */
export function tscKhzSection(khz: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, khz, true);
  return out;
}

/** A VM's KVM state. */
export interface KvmState {
  readonly vm: VmSections;
  readonly vcpus: readonly VcpuSections[];
}

/** KVM state that cannot be loaded: names what is wrong. */
export class KvmStateError extends VmmError {
  override readonly name = 'KvmStateError';
  readonly code = 'KVM_STATE';
}

/** Encode `state`. */
export function encodeKvmState(state: KvmState): Uint8Array {
  const sections: [tag: number, vcpu: number, bytes: Uint8Array][] = [];
  for (const [name, bytes] of Object.entries(state.vm) as [VmSectionName, Uint8Array | undefined][]) {
    if (bytes) sections.push([SECTIONS[name].tag, VM_SECTION, bytes]);
  }
  state.vcpus.forEach((v, i) => {
    for (const [name, bytes] of Object.entries(v) as [VcpuSectionName, Uint8Array | undefined][]) {
      if (bytes) sections.push([SECTIONS[name].tag, i, bytes]);
    }
  });
  const total = HEADER + sections.reduce((n, [, , b]) => n + SECTION_HEADER + b.byteLength, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  out.set(new TextEncoder().encode(KVM_STATE_MAGIC));
  view.setUint16(8, KVM_STATE_VERSION, true);
  view.setUint16(10, state.vcpus.length, true);
  view.setUint32(12, sections.length, true);
  let at = HEADER;
  for (const [tag, vcpu, bytes] of sections) {
    view.setUint16(at, tag, true);
    view.setUint16(at + 2, vcpu, true);
    view.setUint32(at + 4, bytes.byteLength, true);
    out.set(bytes, at + SECTION_HEADER);
    at += SECTION_HEADER + bytes.byteLength;
  }
  return out;
}

/**
 * Decode and validate: magic, version, the vCPU count, every section's tag, owner, length and
 * (for the irqchip's chips, the PIT, the TSC frequency and MP_STATE) values, no section twice,
 * REGS, SREGS, MSRS, MP_STATE and CPUID present for every vCPU, the irqchip's three chips all or
 * none, and with them a LAPIC on every vCPU (and the PIT only with them), the TSC frequency on
 * every vCPU or none, and nothing left over.
 * @throws KvmStateError naming the first problem.
 */
export function decodeKvmState(bytes: Uint8Array, expectedVcpus: number): KvmState {
  const fail = (what: string): never => { throw new KvmStateError(`KVM state: ${what}`); };
  if (bytes.byteLength < HEADER) fail(`${bytes.byteLength} bytes is shorter than the header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (new TextDecoder().decode(bytes.subarray(0, 8)) !== KVM_STATE_MAGIC) fail('bad magic');
  const version = view.getUint16(8, true);
  if (version === 1) {
    fail(`version 1 predates the irqchip, PIT and TSC-frequency sections; this vmmkit reads ${KVM_STATE_VERSION} only `
      + '(the guest\'s interrupt controllers and timer would come up reset)');
  }
  if (version !== KVM_STATE_VERSION) fail(`version ${version}, this vmmkit reads ${KVM_STATE_VERSION}`);
  const vcpuCount = view.getUint16(10, true);
  if (vcpuCount !== expectedVcpus) fail(`${vcpuCount} vCPUs on the source, ${expectedVcpus} here`);
  const count = view.getUint32(12, true);
  const vm: Partial<Record<VmSectionName, Uint8Array>> = {};
  const vcpus: VcpuSections[] = Array.from({ length: vcpuCount }, () => ({}));
  let at = HEADER;
  for (let i = 0; i < count; i++) {
    if (at + SECTION_HEADER > bytes.byteLength) fail(`section ${i} is cut off`);
    const tag = view.getUint16(at, true);
    const vcpu = view.getUint16(at + 2, true);
    const length = view.getUint32(at + 4, true);
    const name = BY_TAG.get(tag) ?? fail(`section ${i} has unknown tag ${tag}`);
    const spec = SECTIONS[name];
    if (at + SECTION_HEADER + length > bytes.byteLength) fail(`${name} (section ${i}) is cut off`);
    if (!spec.valid(length)) fail(`${name} of ${length} bytes has the wrong length`);
    const data = bytes.slice(at + SECTION_HEADER, at + SECTION_HEADER + length);
    const owner = spec.vm ? 'the VM' : `vCPU ${vcpu}`;
    if (spec.vm) {
      if (vcpu !== VM_SECTION) fail(`${name} belongs to the VM, not to vCPU ${vcpu}`);
      if (vm[name as VmSectionName]) fail(`${name} appears twice`);
      vm[name as VmSectionName] = data;
    } else {
      if (vcpu >= vcpuCount) fail(`${name} for vCPU ${vcpu} of ${vcpuCount}`);
      if (vcpus[vcpu]![name as VcpuSectionName]) fail(`${name} of vCPU ${vcpu} appears twice`);
      vcpus[vcpu]![name as VcpuSectionName] = data;
    }
    const problem = 'problem' in spec ? spec.problem(data) : undefined;
    if (problem) fail(`${name} of ${owner}: ${problem}`);
    at += SECTION_HEADER + length;
  }
  if (at !== bytes.byteLength) fail(`${bytes.byteLength - at} bytes after the last section`);
  if (!vm.CLOCK) fail('CLOCK is missing');
  const chips = Object.keys(IRQCHIPS).filter((c) => vm[c as keyof typeof IRQCHIPS]);
  if (chips.length !== 0 && chips.length !== 3) fail(`the irqchip has ${chips.join(', ')} only; its PICs and IOAPIC go together`);
  const irqchip = chips.length === 3;
  if (vm.PIT && !irqchip) fail('PIT without the irqchip it raises its interrupt on');
  const tsc = vcpus.filter((v) => v.TSC_KHZ).length;
  if (tsc !== 0 && tsc !== vcpuCount) fail(`TSC_KHZ for ${tsc} of ${vcpuCount} vCPUs`);
  vcpus.forEach((v, i) => {
    if (!v.LAPIC !== !irqchip) {
      fail(irqchip ? `LAPIC of vCPU ${i} is missing (the irqchip is in the kernel)` : `LAPIC of vCPU ${i} without an in-kernel irqchip`);
    }
    for (const name of ['CPUID', 'REGS', 'SREGS', 'MSRS', 'MP_STATE'] as const) if (!v[name]) fail(`${name} of vCPU ${i} is missing`);
    if (!v.XSAVE && !v.FPU) fail(`vCPU ${i} has neither XSAVE nor FPU`);
    const mp = kvm_mp_state.get(v.MP_STATE!, 'mp_state');
    if (mp > KVM_MP_STATE_SIPI_RECEIVED) fail(`MP_STATE of vCPU ${i} is ${mp}, not an x86 state`);
    const cpuid = v.CPUID!;
    if (kvm_cpuid2.get(cpuid, 'nent') * kvm_cpuid_entry2.size + kvm_cpuid2.size !== cpuid.byteLength) fail(`CPUID of vCPU ${i} does not match its entry count`);
    const msrs = v.MSRS!;
    if (kvm_msrs.get(msrs, 'nmsrs') * kvm_msr_entry.size + kvm_msrs.size !== msrs.byteLength) fail(`MSRS of vCPU ${i} does not match its count`);
  });
  return { vm: vm as VmSections, vcpus };
}
