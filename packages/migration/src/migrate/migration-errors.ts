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
 * The migration failed or was cancelled. On the source the VM runs on, its devices back in RUNNING
 * and dirty tracking stopped, except when the connection was lost after GO without the
 * destination saying whether it started the guest: the source then stays paused (the message
 * says so), since the guest may be running there. `cause` has the failure itself.
 */
export class MigrationFailedError extends VmmError {
  override readonly name = 'MigrationFailedError';
  readonly code = 'MIGRATION_FAILED';

  /** @param options.detail what state the failure left things in, when it is not the usual one. */
  constructor(readonly side: 'source' | 'destination', readonly phase: MigrationPhase, cause: unknown, options: { detail?: string } = {}) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super(`migration failed on the ${side} during ${phase}: ${why}${options.detail ? ` (${options.detail})` : ''}`, { cause });
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
