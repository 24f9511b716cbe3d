// <linux/kvm.h>: the few system ioctls vmmkit uses to probe /dev/kvm.

import { _IO } from './ioctl.js';

export const KVMIO = 0xae;
export const KVM_API_VERSION = 12;

export const KVM_GET_API_VERSION = _IO(KVMIO, 0x00);
export const KVM_CREATE_VM = _IO(KVMIO, 0x01);
export const KVM_CHECK_EXTENSION = _IO(KVMIO, 0x03);
export const KVM_GET_VCPU_MMAP_SIZE = _IO(KVMIO, 0x04);

/** Extensions for KVM_CHECK_EXTENSION. */
export const KVM_CAP_IRQCHIP = 0;
export const KVM_CAP_USER_MEMORY = 3;
export const KVM_CAP_NR_VCPUS = 9;
export const KVM_CAP_IRQFD = 32;
export const KVM_CAP_IOEVENTFD = 36;
export const KVM_CAP_MAX_VCPUS = 66;

/** The system ioctls of /dev/kvm, by name. */
export const KVM_SYSTEM_IOCTLS = {
  KVM_GET_API_VERSION, KVM_CREATE_VM, KVM_CHECK_EXTENSION, KVM_GET_VCPU_MMAP_SIZE,
} as const;
