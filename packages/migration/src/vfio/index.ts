// VFIO migration v2 on one device (QEMU's hw/vfio/migration.c).

export { VfioMigration, VFIO_MIG_DEFAULT_CHUNK_SIZE, VFIO_MIG_STOP_COPY_SIZE, type VfioMigrationOptions } from './vfio-migration.js';
export type { MigReadResult, PrecopyInfo } from './vfio-migration.js';
export { holdsSession, isPrecopyState, migStateName } from './mig-states.js';
