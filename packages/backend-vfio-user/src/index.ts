// @vmmkit/backend-vfio-user: the vfio-user client. A device served by another process over a
// Unix socket: its DMA mappings (the container) and its I/O (the device) are messages.

export * from './vfio-user-proxy.js';
export * from './server-version.js';
export * from './vfio-user-device-io.js';
export * from './vfio-user-device.js';
export * from './vfio-user-container.js';
export * from './vfio-user-iommu-backend.js';
export * from './vfio-user-pci.js';
export * from './plugin.js';
