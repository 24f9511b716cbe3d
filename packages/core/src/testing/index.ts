// @vmmkit/core/testing: the contract suites backends (vmmkit's and users') run against themselves.

export * from './contract-harness.js';
export * from './vfio-iommu-contract.js';
export * from './edu-dma.js';
export * from './host-contract-harness.js';
export * from './real-devices.js';
