// @vmmkit/backend-legacy-type1: the legacy VFIO backend (groups and type1 containers).

export * from './plugin.js';
export * from './legacy-iommu-backend.js';
export * from './legacy-type1-container.js';
export * from './legacy-host-iommu-device.js';
export * from './type1-info.js';
export * from './vfio-group.js';
