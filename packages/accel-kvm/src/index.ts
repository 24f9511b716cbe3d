// @vmmkit/accel-kvm: KVM as the VM's accelerator.

export * from './kvm-errors.js';
export * from './kvm-system.js';
export * from './kvm-memslots.js';
export * from './kvm-dirty-log.js';
export * from './kvm-vm.js';
export * from './kvm-eventfds.js';
export * from './kvm-irq-routes.js';
export * from './kvm-msi-router.js';
export * from './vcpu/io-handler.js';
export * from './pci/pci-host-bridge.js';
export * from './pci/bar-windows.js';
export * from './pci/bar-mappings.js';
export * from './vcpu/kvm-vcpu.js';
export * from './vcpu/vcpu-registers.js';
export * from './state/kvm-state-format.js';
export * from './state/vcpu-state.js';
export * from './state/vm-state.js';
export * from './state/vm-device-checks.js';
export * from './state/tsc-frequency.js';
export * from './kvm-accel.js';
export * from './plugin.js';
export * from './vcpu/vcpu-cpuid.js';
export * from './guests/index.js';
