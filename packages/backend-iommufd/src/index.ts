// @vmmkit/backend-iommufd: the iommufd object, IOAS containers, auto domains and HWPT dirty tracking.

export * from './plugin.js';
export * from './iommufd-object.js';
export * from './iommufd-container.js';
export * from './iommufd-host-iommu-device.js';
export * from './iommufd-iommu-backend.js';
export * from './iommufd-object-type.js';
export * from './passed-iommu-fd.js';
