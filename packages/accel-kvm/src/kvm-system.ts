// /dev/kvm: the system fd, its API version and capabilities, and the facts every VM shares
// (the vCPU mmap size, the MSRs to migrate, the CPUID KVM supports).

import { HostError, type HostKernel } from '@vmmkit/core';
import {
  O_CLOEXEC, O_RDWR, KVM_API_VERSION, KVM_CHECK_EXTENSION, KVM_CREATE_VM, KVM_GET_API_VERSION, KVM_GET_MSR_INDEX_LIST,
  KVM_GET_SUPPORTED_CPUID, KVM_GET_VCPU_MMAP_SIZE, KVM_MAX_CPUID_ENTRIES, kvm_cpuid2, kvm_cpuid_entry2, kvm_msr_list,
} from '@vmmkit/core/uapi';
import { KvmError } from './kvm-errors.js';

/** The path of KVM's device node. */
export const KVM_DEVICE = '/dev/kvm';

/** The system fd of KVM. Whoever opens it closes it. */
export class KvmSystem {
  private constructor(readonly host: HostKernel, readonly fd: number) {}

  /**
   * Open /dev/kvm and check its API version.
   * @throws KvmError (cause HostError ENOENT/EACCES) when it cannot be opened, or for an API
   *   version other than 12; the fd is closed again.
   */
  static open(host: HostKernel): KvmSystem {
    const fd = KvmError.wrap(`open ${KVM_DEVICE}`, () => host.open(KVM_DEVICE, O_RDWR | O_CLOEXEC));
    try {
      const version = KvmError.wrap('read the API version', () => host.ioctl(fd, KVM_GET_API_VERSION));
      if (version !== KVM_API_VERSION) throw new KvmError('read the API version', `KVM API ${version}, vmmkit needs ${KVM_API_VERSION}`);
      return new KvmSystem(host, fd);
    } catch (e) {
      host.close(fd);
      throw e;
    }
  }

  /** KVM_CHECK_EXTENSION: 0 when the capability is absent, else its value. */
  extension(cap: number): number {
    return KvmError.wrap(`check extension ${cap}`, () => this.host.ioctl(this.fd, KVM_CHECK_EXTENSION, cap));
  }

  /** The size of each vCPU's kvm_run mapping. */
  vcpuMmapSize(): number {
    return KvmError.wrap('read the vCPU mmap size', () => this.host.ioctl(this.fd, KVM_GET_VCPU_MMAP_SIZE));
  }

  /** KVM_CREATE_VM (default machine type): the new VM fd. */
  createVm(): number {
    return KvmError.wrap('create the VM', () => this.host.ioctl(this.fd, KVM_CREATE_VM, 0));
  }

  /** The MSRs KVM saves and restores (KVM_GET_MSR_INDEX_LIST): what a vCPU's state carries. */
  msrIndices(): number[] {
    return KvmError.wrap('list the MSRs', () => {
      let count = 64;
      for (;;) {
        const buf = kvm_msr_list.encode({ nmsrs: count, indices: new Array<number>(count).fill(0) });
        try {
          this.host.ioctl(this.fd, KVM_GET_MSR_INDEX_LIST, buf);
        } catch (e) {
          // E2BIG: the list is longer; nmsrs now says how long.
          if (!HostError.is(e, 'E2BIG')) throw e;
          count = kvm_msr_list.get(buf, 'nmsrs');
          continue;
        }
        return kvm_msr_list.readFlex(buf, kvm_msr_list.get(buf, 'nmsrs'));
      }
    });
  }

  /** The CPUID KVM supports (KVM_GET_SUPPORTED_CPUID), as kvm_cpuid2 bytes ready for KVM_SET_CPUID2. */
  supportedCpuid(): Uint8Array {
    return KvmError.wrap('read the supported CPUID', () => {
      const buf = kvm_cpuid2.encode({ nent: KVM_MAX_CPUID_ENTRIES });
      const full = new Uint8Array(kvm_cpuid2.size + KVM_MAX_CPUID_ENTRIES * kvm_cpuid_entry2.size);
      full.set(buf);
      this.host.ioctl(this.fd, KVM_GET_SUPPORTED_CPUID, full);
      return full.slice(0, kvm_cpuid2.size + kvm_cpuid2.get(full, 'nent') * kvm_cpuid_entry2.size);
    });
  }

  close(): void {
    this.host.close(this.fd);
  }
}
