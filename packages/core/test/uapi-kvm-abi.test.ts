// The KVM uAPI of core/src/uapi/kvm.ts against the host's <linux/kvm.h> (x86-64), as measured
// with gcc by tools/kvm/uapi-facts.sh: every constant and ioctl number, every struct's size and
// member offsets, and the exit union inside struct kvm_run.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as uapi from '../src/uapi/index.js';
import { StructType } from '../src/uapi/struct.js';

interface KvmFacts {
  structs: Record<string, { size: number; fields: Record<string, [offset: number, size: number]> }>;
  runUnion: Record<string, number>;
  constants: Record<string, number>;
}
const facts = JSON.parse(readFileSync(new URL('./fixtures/kvm-uapi-x86_64.json', import.meta.url), 'utf8')) as KvmFacts;
const declared = uapi as unknown as Record<string, unknown>;

describe('KVM uAPI constants and ioctl numbers match <linux/kvm.h>', () => {
  it.for(Object.entries(facts.constants))('%s = %i', ([name, value]) => {
    expect(declared[name], `${name} is not declared`).toBe(value);
  });
  it('keeps ioctl numbers at or above 2^31 unsigned', () => {
    expect(uapi.KVM_CLEAR_DIRTY_LOG).toBe(0xc018aec0);
    expect(uapi.KVM_GET_MSRS).toBeGreaterThan(0);
  });
  it('names every VM and vCPU ioctl for errors', () => {
    for (const [name, request] of Object.entries({ ...uapi.KVM_VM_IOCTLS, ...uapi.KVM_VCPU_IOCTLS })) {
      expect(uapi.ioctlName(request, 'kvm')).toBe(name);
    }
  });
});

describe('KVM struct layouts match the kernel', () => {
  it.for(Object.entries(facts.structs))('struct %s', ([name, fact]) => {
    const s = declared[name] as StructType<never>;
    expect(s, `struct ${name} is not declared`).toBeInstanceOf(StructType);
    // kvm_run is declared up to its register sync area: the part vmmkit reads.
    expect(s.size).toBe(name === 'kvm_run' ? facts.runUnion.kvm_valid_regs : fact.size);
    const members = s.members as Record<string, { offset: number; size: number }>;
    for (const [field, [offset, size]] of Object.entries(fact.fields)) {
      if (size === 0) {
        expect(s.flexible?.name, `${name}.${field}`).toBe(field);
        expect(s.flexible?.offset, `${name}.${field}`).toBe(offset);
        continue;
      }
      expect(members[field], `${name}.${field} is not declared`).toBeDefined();
      expect([members[field]!.offset, members[field]!.size], `${name}.${field}`).toEqual([offset, size]);
    }
  });
  it('the exit union of kvm_run', () => {
    for (const [path, offset] of Object.entries(facts.runUnion)) {
      if (path === 'kvm_valid_regs') continue;
      const [outer, inner] = path.split('.') as [string, string];
      const outerLayout = (uapi.kvm_run.members as Record<string, { offset: number; type: unknown }>)[outer]!;
      const innerStruct = outerLayout.type as StructType<never>;
      const innerOffset = (innerStruct.members as Record<string, { offset: number }>)[inner]!.offset;
      expect(outerLayout.offset + innerOffset, path).toBe(offset);
    }
  });
});
