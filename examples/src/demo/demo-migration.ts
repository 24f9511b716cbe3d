// One migration of the demo: the source VMM migrates into the destination with migrate() while
// a recorder folds its events into the report's record; then the destination is verified.

import { migrate } from '@vmmkit/migration';
import type { ReportRun } from '../report/migration-record.js';
import { recordMigration } from '../report/migration-recorder.js';
import type { DemoPair } from './demo-pair.js';
import { verifyMigration } from './verify-migration.js';

/** The migration parameters the demo passes to migrate(). */
export interface DemoMigrationSettings {
  readonly downtimeLimitMs: number;
  /** Bytes per second. */
  readonly maxBandwidth: number;
  readonly maxIterations: number;
}

/**
 * Migrate `pair`'s source into its destination, recorded as `label`, and compare both ends.
 * @throws what migrate() throws (MigrationBlockedError, MigrationFailedError): the source runs on.
 */
export async function migrateDemoPair(pair: DemoPair, settings: DemoMigrationSettings, label: string): Promise<ReportRun> {
  const recording = recordMigration(pair.source.vm.vmm, label);
  try {
    await migrate(pair.source.vm.vmm, pair.destination.vm.vmm, {
      downtimeLimitMs: settings.downtimeLimitMs, maxBandwidth: settings.maxBandwidth, maxIterations: settings.maxIterations,
    });
  } finally {
    recording.stop();
  }
  // The source is paused now; its timers stop so that nothing changes while both ends are compared.
  pair.activity.stop();
  return { record: recording.record, verification: verifyMigration(pair) };
}
