// The CPUID a vCPU is given: what KVM supports, with the APIC ID fields set to the vCPU's index.
// KVM_GET_SUPPORTED_CPUID fills those from the host CPU the calling thread happens to run on,
// so without this two VMs (or two calls) would differ, and a migrated guest would see its CPU
// change.

import { kvm_cpuid2, kvm_cpuid_entry2 } from '@vmmkit/core/uapi';

const LEAF_FEATURES = 0x1;
const LEAF_TOPOLOGY = 0xb;
const LEAF_TOPOLOGY_V2 = 0x1f;

/** `supported` (kvm_cpuid2 bytes) with vCPU `index`'s APIC ID; a new buffer. */
export function vcpuCpuid(supported: Uint8Array, index: number): Uint8Array {
  const out = supported.slice();
  const count = kvm_cpuid2.get(out, 'nent');
  for (let i = 0; i < count; i++) {
    const at = kvm_cpuid2.size + i * kvm_cpuid_entry2.size;
    const fn = kvm_cpuid_entry2.get(out, 'function', at);
    if (fn === LEAF_FEATURES) {
      // EBX[31:24]: the initial APIC ID.
      kvm_cpuid_entry2.set(out, 'ebx', ((kvm_cpuid_entry2.get(out, 'ebx', at) & 0x00ff_ffff) | (index << 24)) >>> 0, at);
    } else if (fn === LEAF_TOPOLOGY || fn === LEAF_TOPOLOGY_V2) {
      // EDX: the x2APIC ID, in every subleaf.
      kvm_cpuid_entry2.set(out, 'edx', index, at);
    }
  }
  return out;
}
