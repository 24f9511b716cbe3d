// The ways a migration ends without a running destination, each naming what went wrong.

import { VmmError } from '@vmmkit/core';
import type { MigrationBlocker } from '../plan/migration-plan.js';

/** Where a migration was when it stopped. */
export type MigrationPhase = 'setup' | 'precopy' | 'stop-copy' | 'handover';

/** The VM cannot migrate: every blocker, in QEMU's words. Nothing was changed. */
export class MigrationBlockedError extends VmmError {
  override readonly name = 'MigrationBlockedError';
  readonly code = 'MIGRATION_BLOCKED';

  constructor(readonly blockers: readonly MigrationBlocker[]) {
    super(`the VM cannot migrate: ${blockers.map((b) => b.reason).join('; ')}`);
  }
}

/**
 * The migration failed or was cancelled; on the source the VM runs on, its devices back in
 * RUNNING and dirty tracking stopped. `cause` has the failure itself.
 */
export class MigrationFailedError extends VmmError {
  override readonly name = 'MigrationFailedError';
  readonly code = 'MIGRATION_FAILED';

  constructor(readonly side: 'source' | 'destination', readonly phase: MigrationPhase, cause: unknown) {
    super(`migration failed on the ${side} during ${phase}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/** The migration was cancelled: through its AbortSignal, or because the VMM is closing. */
export class MigrationCancelledError extends VmmError {
  override readonly name = 'MigrationCancelledError';
  readonly code = 'MIGRATION_CANCELLED';
}

/** The destination refused what it was sent (a mismatch with its VM, or the source gave up). */
export class MigrationRefusedError extends VmmError {
  override readonly name = 'MigrationRefusedError';
  readonly code = 'MIGRATION_REFUSED';

  constructor(readonly reason: string) {
    super(reason);
  }
}
