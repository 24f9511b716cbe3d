// The plain data a migration report is made of: what one live migration did, pass by pass, as
// recorded from the source VMM's `migration:*` events (see record-event.ts), plus the check of
// the destination against the source. Only numbers, strings and arrays: it serializes as JSON.

import type { DirtyTrackingStrategy } from '@vmmkit/core';
import type { MigrationResult, PlannedContainer } from '@vmmkit/migration';

/** Who found dirty pages at a sync: the guest's own writes, a RAM dirty-log provider, or a container's tracker. */
export type TrackerKind = 'all-ram' | 'guest' | 'provider' | 'container';

/** Pages one tracker found dirty at the syncs that led to a pass. */
export interface TrackerPages {
  /** A stable key across passes (for colours and legends): `guest`, `provider:<name>`, `container:<id>`. */
  readonly key: string;
  readonly kind: TrackerKind;
  /** What to call it: "guest writes", a container's id, ... */
  readonly label: string;
  /** The container's dirty-tracking strategy. */
  readonly strategy?: DirtyTrackingStrategy;
  readonly pages: number;
}

/**
 * One pass of the migration: a precopy iteration, or the stop-copy pass after the switchover.
 * Each pass starts from a decision: what the dirty syncs found and what switching over would
 * cost; precopy passes are sent because that cost was over the limit (or it was the first).
 */
export interface PassRecord {
  /** The migration's iteration number (the stop-copy pass carries the switchover's). */
  readonly iteration: number;
  readonly phase: 'precopy' | 'stop-copy';
  /** Dirty pages found by each tracker for this pass (the first pass: all of RAM). */
  readonly found: readonly TrackerPages[];
  /** Pages dirty when the pass began (the sum of `found`). */
  readonly dirtyPages: number;
  /**
   * What switching over instead of this pass would have cost, in ms, as the migration estimated
   * it at the sync (dirty pages and the devices' pending state over the last pass's throughput;
   * the stop-copy pass: the estimate that let it switch over). Absent for the first pass, which
   * is always sent.
   */
  readonly expectedDowntimeMs?: number;
  /** The migration's estimate right after the pass, before the trackers were synced again. */
  readonly expectedAfterMs: number;
  /** RAM pages sent as data, and as zero markers (no data). */
  readonly pagesSent: number;
  readonly zeroPages: number;
  /** Device state bytes sent in the pass. */
  readonly deviceBytes: number;
  /** Stream bytes of the pass. */
  readonly bytesSent: number;
  /** Stream throughput of the pass, bytes per second. */
  readonly throughput: number;
  /** Time the dirty syncs of this pass took, ms. */
  readonly syncMs: number;
}

/** A VFIO container as the migration plan saw it. */
export type PlannedContainerRecord = Pick<PlannedContainer, 'container' | 'backend' | 'strategy' | 'reason' | 'devices'>;

/** The end of a migration: the result the source reported (MigrationResult is plain data). */
export type MigrationOutcome = MigrationResult;

/** One live migration, from `migration:started` to `migration:completed`. */
export interface MigrationRecord {
  /** What this run was (a strategy name in a comparison). */
  readonly label: string;
  readonly containers: readonly PlannedContainerRecord[];
  readonly blockers: readonly string[];
  readonly warnings: readonly string[];
  readonly passes: readonly PassRecord[];
  /** Set once the migration completed. */
  readonly outcome?: MigrationOutcome;
}

/** The destination checked against the source after a migration. */
export interface VerificationRecord {
  /** SHA-256 over every RAM block, in order, on each side (hex). */
  readonly ram: { readonly source: string; readonly destination: string; readonly equal: boolean };
  /** Each migrated device's state (the device model's saved state) on each side. */
  readonly devices: readonly {
    readonly name: string;
    readonly host: string;
    readonly bytes: number;
    readonly source: string;
    readonly destination: string;
    readonly equal: boolean;
  }[];
  /** Everything equal. */
  readonly ok: boolean;
}

/** A migration run of a report: the record and its verification. */
export interface ReportRun {
  readonly record: MigrationRecord;
  readonly verification?: VerificationRecord;
}

/** What a report page shows: the settings the runs shared, and one run or several to compare. */
export interface MigrationReport {
  readonly title: string;
  /** ISO time the report was made. */
  readonly generatedAt: string;
  /** The workload and migration settings, in words (name → value). */
  readonly settings: readonly (readonly [string, string])[];
  /** The downtime limit the runs had, ms (drawn on the downtime chart). */
  readonly downtimeLimitMs?: number;
  readonly runs: readonly ReportRun[];
}
