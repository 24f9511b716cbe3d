// An example third-party backend plugin: see ioas-iommu-class.ts.

export * from './ioas-container.js';
export * from './ioas-iommu-class.js';
export * from './plugin.js';
