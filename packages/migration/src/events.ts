// The migration's trace points, added to the VMM's typed events (see VmmEvents in @vmmkit/core).

import '@vmmkit/core';
import type { DirtySyncReport } from './dirty/vm-dirty-tracking.js';
import type { MigrationPhase } from './migration-errors.js';
import type { MigrationResult } from './migrate/migration-options.js';
import type { MigrationPlan, MigrationBlocker } from './plan/migration-plan.js';

/** A VFIO device moved between migration states (VFIO_DEVICE_STATE_* names, e.g. 'PRE_COPY'). */
export interface DeviceStateChange {
  readonly device: string;
  readonly from: string;
  readonly to: string;
}

/** Where a precopy iteration (or the stop-copy pass) left the migration. */
export interface MigrationProgress {
  readonly iteration: number;
  readonly phase: 'precopy' | 'stop-copy';
  /** RAM pages this pass sent as data, and as zero markers. */
  readonly pagesSent: number;
  readonly zeroPages: number;
  /** Device state bytes this pass sent. */
  readonly deviceBytes: number;
  /** Stream bytes so far. */
  readonly bytesSent: number;
  /** Stream throughput of this pass, bytes per second. */
  readonly throughput: number;
  /** Pages dirty at this pass's sync (everything, at the first). */
  readonly dirtyPages: number;
  /** What switching over now would cost, from what is pending and the measured throughput. */
  readonly expectedDowntimeMs: number;
}

declare module '@vmmkit/core' {
  interface VmmEvents {
    'migration:device-state': [e: DeviceStateChange];
    /** The VM's migration blockers changed (a device came or went). */
    'migration:blockers-changed': [e: Readonly<{ blockers: readonly MigrationBlocker[] }>];
    /** An outgoing migration started: the plan it follows (each container's strategy). */
    'migration:started': [e: Readonly<{ plan: MigrationPlan }>];
    /** A precopy iteration begins (the guest has been running since the last one). */
    'migration:iteration': [e: Readonly<{ iteration: number }>];
    /**
     * A dirty sync found pages: how many, and which tracker found them; the pages dirty now and
     * the downtime switching over now would cost (what a precopy sync decides on).
     */
    'migration:dirty-sync': [e: Readonly<{ iteration: number; phase: 'precopy' | 'stop-copy'; expectedDowntimeMs: number }> & DirtySyncReport];
    'migration:progress': [e: MigrationProgress];
    /**
     * The source pauses the guest and stops its devices, after `passes` precopy passes (the
     * result's `iterations`); the stop-copy pass that follows is pass `passes + 1`.
     */
    'migration:switchover': [e: Readonly<{ passes: number; converged: boolean; expectedDowntimeMs: number; dirtyPages: number }>];
    'migration:completed': [e: MigrationResult];
    /** The migration failed; `cancelled` when it was cancelled (its signal, or the VM closing) rather than failing. */
    'migration:failed': [e: Readonly<{ side: 'source' | 'destination'; phase: MigrationPhase; error: string; cancelled: boolean }>];
    /** The destination loaded everything and started the guest. */
    'migration:incoming-completed': [e: Readonly<{ pages: number; zeroPages: number; deviceBytes: number }>];
  }
}
