// @vmmkit/migration: VFIO migration v2, the dirty-tracking strategy per container, and live
// migration of RAM and devices over a versioned stream.

export * from './events.js';
export * from './vfio/index.js';
export * from './stream/index.js';
export * from './plugin.js';
export * from './plan/migration-plan.js';
export * from './dirty/ram-dirty-log.js';
export * from './dirty/vm-dirty-tracking.js';
export * from './migration-errors.js';
export * from './migrate/migration-options.js';
export * from './migrate/migration-parameters.js';
export * from './migrate/outgoing.js';
export * from './migrate/incoming.js';
export * from './migrate/migrate.js';
export * from './migrate/setup-description.js';
