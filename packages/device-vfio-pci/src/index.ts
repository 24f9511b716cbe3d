// @vmmkit/device-vfio-pci: host PCI devices assigned to a VM through VFIO.

export * from './plugin.js';
export * from './vfio-pci-device.js';
export * from './vfio-pci-options.js';
export * from './vfio-pci-config.js';
export * from './vfio-bar.js';
export * from './vfio-interrupts.js';
export * from './msix-table.js';
export * from './pci-capabilities.js';
