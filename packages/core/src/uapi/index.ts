// The Linux uAPI as vmmkit declares it: ioctl encoding, struct codec and the header tables.

export * from './ioctl.js';
export * from './ioctl-names.js';
export * from './struct.js';
export * from './iommufd.js';
export * from './iommufd-test.js';
export * from './linux-7.2.js';
export * from './vfio.js';
export * from './kvm.js';
export * from './pci-regs.js';
export * from '../host/posix.js';
