// @vmmkit/device-vfio-pci: host PCI devices assigned to a VM through VFIO. The public surface is
// the plugin, the device and its options; config space, BARs, interrupts and the MSI-X table are
// the device's own (their types are exported for what the device's methods return).

export * from './plugin.js';
export * from './vfio-pci-device.js';
export * from './vfio-pci-options.js';
export type { VfioBar, AccessSize } from './vfio-bar.js';
export type { InterruptMode } from './vfio-interrupts.js';
