// An example third-party backend plugin: see ioas-iommu-backend.ts.

export * from './ioas-container.js';
export * from './ioas-iommu-backend.js';
export * from './plugin.js';
