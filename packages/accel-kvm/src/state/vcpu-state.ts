// One vCPU's state through KVM's GET/SET ioctls, in the order the kernel needs on restore
// (QEMU's kvm_arch_put_registers): the TSC frequency (before the TSC MSR is written at it),
// registers, XSAVE (or FPU), XCRs, special registers, MSRs, MP state, local APIC, events, debug
// registers. The vCPU must be out of KVM_RUN (parked).

import { HostError, type HostKernel } from '@vmmkit/core';
import {
  KVM_GET_DEBUGREGS, KVM_GET_FPU, KVM_GET_LAPIC, KVM_GET_MP_STATE, KVM_GET_MSRS, KVM_GET_REGS, KVM_GET_SREGS,
  KVM_GET_VCPU_EVENTS, KVM_GET_XCRS, KVM_GET_XSAVE, KVM_GET_XSAVE2, KVM_SET_DEBUGREGS, KVM_SET_FPU, KVM_SET_LAPIC,
  KVM_SET_MP_STATE, KVM_SET_MSRS, KVM_SET_REGS, KVM_SET_SREGS, KVM_SET_VCPU_EVENTS, KVM_SET_XCRS, KVM_SET_XSAVE,
  kvm_debugregs, kvm_fpu, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_msrs, kvm_regs, kvm_sregs, kvm_vcpu_events,
  kvm_xcrs,
} from '@vmmkit/core/uapi';
import { KvmError } from '../kvm-errors.js';
import { KvmStateError, tscKhzOf, tscKhzSection, type VcpuSectionName, type VcpuSections } from './kvm-state-format.js';
import { readTscKhz, setTscKhz, tscKhzToSet, type TscCaps } from './tsc-frequency.js';

/** What the host lets a vCPU's state hold. */
export interface VcpuStateCaps {
  /** Bytes of the XSAVE area (KVM_CAP_XSAVE2's value, 4096 with plain KVM_CAP_XSAVE), 0 for FPU only. */
  readonly xsaveSize: number;
  /** KVM_GET_XSAVE2 exists (KVM_CAP_XSAVE2). */
  readonly xsave2: boolean;
  readonly xcrs: boolean;
  readonly events: boolean;
  readonly debugregs: boolean;
  /** The local APIC is in the kernel (an in-kernel irqchip). */
  readonly lapic: boolean;
  /** What the host can do about the TSC's rate. */
  readonly tsc: TscCaps;
}

/** What restoring a vCPU takes beyond its sections, found while checking them. */
export interface VcpuRestorePlan {
  /** The TSC rate to set first, in kHz (undefined: it runs at the source's already). */
  readonly tscKhz?: number;
}

interface Section {
  readonly name: VcpuSectionName;
  readonly get: number;
  readonly set: number;
  readonly size: (caps: VcpuStateCaps) => number;
  readonly has: (caps: VcpuStateCaps) => boolean;
}

/** Restore order. */
const SECTIONS: readonly Section[] = [
  { name: 'REGS', get: KVM_GET_REGS, set: KVM_SET_REGS, size: () => kvm_regs.size, has: () => true },
  { name: 'XSAVE', get: KVM_GET_XSAVE, set: KVM_SET_XSAVE, size: (c) => c.xsaveSize, has: (c) => c.xsaveSize > 0 },
  { name: 'FPU', get: KVM_GET_FPU, set: KVM_SET_FPU, size: () => kvm_fpu.size, has: (c) => c.xsaveSize === 0 },
  { name: 'XCRS', get: KVM_GET_XCRS, set: KVM_SET_XCRS, size: () => kvm_xcrs.size, has: (c) => c.xcrs },
  { name: 'SREGS', get: KVM_GET_SREGS, set: KVM_SET_SREGS, size: () => kvm_sregs.size, has: () => true },
  { name: 'MP_STATE', get: KVM_GET_MP_STATE, set: KVM_SET_MP_STATE, size: () => kvm_mp_state.size, has: () => true },
  { name: 'LAPIC', get: KVM_GET_LAPIC, set: KVM_SET_LAPIC, size: () => kvm_lapic_state.size, has: (c) => c.lapic },
  { name: 'EVENTS', get: KVM_GET_VCPU_EVENTS, set: KVM_SET_VCPU_EVENTS, size: () => kvm_vcpu_events.size, has: (c) => c.events },
  { name: 'DEBUGREGS', get: KVM_GET_DEBUGREGS, set: KVM_SET_DEBUGREGS, size: () => kvm_debugregs.size, has: (c) => c.debugregs },
];

/** A vCPU's state, with the MSRs it can read and the CPUID it was given. */
export class VcpuState {
  /** The MSRs this vCPU reads back (KVM_GET_MSR_INDEX_LIST less those it refuses). */
  #msrs: number[] | undefined;

  constructor(
    private readonly host: HostKernel,
    readonly index: number,
    readonly fd: number,
    private readonly caps: VcpuStateCaps,
    private readonly msrIndices: readonly number[],
    /** The kvm_cpuid2 the vCPU was given: carried, and compared on the destination. */
    readonly cpuid: Uint8Array,
  ) {}

  /** Read every section. */
  save(): VcpuSections {
    const out: VcpuSections = { CPUID: this.cpuid.slice() };
    for (const s of SECTIONS) {
      if (!s.has(this.caps)) continue;
      const buf = new Uint8Array(s.size(this.caps));
      const request = s.name === 'XSAVE' && this.caps.xsave2 ? KVM_GET_XSAVE2 : s.get;
      this.#call(`read ${s.name}`, request, buf);
      out[s.name] = buf;
    }
    out.MSRS = this.#getMsrs();
    if (this.caps.tsc.read) out.TSC_KHZ = tscKhzSection(readTscKhz(this.host, this.fd, this.index));
    return out;
  }

  /**
   * Check that `state` fits this vCPU, setting nothing: the CPUID it ran with is this one's
   * exactly, every section this host has is there at this host's size (an XSAVE area of another
   * size means another CPU), and its TSC rate is this vCPU's or one KVM can scale to (reading
   * this vCPU's rate is the only call made).
   * @throws KvmStateError naming what does not fit; KvmError when the TSC rate cannot be read.
   */
  check(state: VcpuSections): VcpuRestorePlan {
    const fail = (what: string): never => { throw new KvmStateError(`KVM state: vCPU ${this.index}: ${what}`); };
    const theirs = state.CPUID ?? fail('CPUID is missing');
    const mine = this.cpuid;
    if (theirs.byteLength !== mine.byteLength || !theirs.every((b, j) => b === mine[j])) {
      fail(`it ran with another CPUID on the source (${theirs.byteLength} bytes, ${mine.byteLength} here): the guest would see its CPU change`);
    }
    for (const s of SECTIONS) {
      const bytes = state[s.name];
      if (!s.has(this.caps)) {
        if (bytes) fail(`${s.name} came from the source, this host has none to set`);
        continue;
      }
      if (!bytes) fail(`${s.name} is missing from the source's state`);
      else if (bytes.byteLength !== s.size(this.caps)) fail(`${s.name} has ${bytes.byteLength} bytes, this host's has ${s.size(this.caps)}`);
    }
    if (!state.MSRS) fail('MSRS is missing');
    // A source that could not read its TSC rate carried none: nothing to compare (as QEMU).
    if (!state.TSC_KHZ) return {};
    const current = this.caps.tsc.read ? readTscKhz(this.host, this.fd, this.index) : undefined;
    return { tscKhz: tscKhzToSet(this.index, tscKhzOf(state.TSC_KHZ), current, this.caps.tsc) };
  }

  /**
   * Write every section, in restore order, after `check` passed for every vCPU and gave `plan`.
   * @throws KvmError naming the section (and, for MSRs, the first index KVM refused).
   */
  load(state: VcpuSections, plan: VcpuRestorePlan): void {
    if (plan.tscKhz !== undefined) setTscKhz(this.host, this.fd, this.index, plan.tscKhz);
    for (const s of SECTIONS) {
      if (!s.has(this.caps)) continue;
      this.#call(`restore ${s.name}`, s.set, state[s.name]!.slice());
      if (s.name === 'SREGS') this.#setMsrs(state.MSRS!);
    }
  }

  #getMsrs(): Uint8Array {
    this.#msrs ??= this.#readableMsrs();
    const buf = kvm_msrs.encode({ nmsrs: this.#msrs.length, entries: this.#msrs.map((index) => ({ index })) });
    const n = this.#call('read MSRS', KVM_GET_MSRS, buf);
    if (n !== this.#msrs.length) throw new KvmError(`vCPU ${this.index}: read MSRS`, `KVM read ${n} of ${this.#msrs.length}`);
    return buf;
  }

  /** GET_MSRS stops at the first MSR it cannot read: drop that one and try the rest. */
  #readableMsrs(): number[] {
    let indices = [...this.msrIndices];
    for (;;) {
      const buf = kvm_msrs.encode({ nmsrs: indices.length, entries: indices.map((index) => ({ index })) });
      const n = this.#call('read MSRS', KVM_GET_MSRS, buf);
      if (n === indices.length) return indices;
      indices = [...indices.slice(0, n), ...indices.slice(n + 1)];
    }
  }

  #setMsrs(bytes: Uint8Array): void {
    const count = kvm_msrs.get(bytes, 'nmsrs');
    const n = this.#call('restore MSRS', KVM_SET_MSRS, bytes.slice());
    if (n !== count) {
      const index = kvm_msr_entry.decode(bytes, kvm_msrs.size + n * kvm_msr_entry.size).index;
      throw new KvmError(`vCPU ${this.index}: restore MSRS`, `KVM refused MSR 0x${index.toString(16)} (${n} of ${count} set)`);
    }
  }

  #call(step: string, request: number, buf: Uint8Array): number {
    try {
      return this.host.ioctl(this.fd, request, buf);
    } catch (e) {
      if (e instanceof HostError) throw new KvmError(`vCPU ${this.index}: ${step}`, e.message, { cause: e });
      throw e;
    }
  }
}

