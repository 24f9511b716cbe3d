// Every typed error of the migration package, in one module: how a migration ends without a
// running destination (blocked, failed, cancelled, refused), and what the stream and its
// transport report (a record that breaks the format or fails its checksum, a peer gone quiet, a
// connection lost).

import { VmmError } from '@vmmkit/core';
import type { MigrationBlocker } from './plan/migration-plan.js';

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

/** What was wrong with the stream. */
export type StreamFault =
  | 'bad-magic'
  | 'bad-version'
  | 'bad-preamble'
  | 'unknown-type'
  | 'nonzero-flags'
  | 'nonzero-reserved'
  | 'bad-length'
  | 'bad-count'
  | 'outside-ram'
  | 'bad-payload'
  | 'bad-checksum'
  | 'truncated';

/**
 * The stream breaks the wire format. Names the record type (or `preamble`), the stream offset of
 * the record's first byte, and what was wrong, e.g.
 * `migration stream: RAM_PAGES record at offset 4120: count 300 is outside 1..256`.
 */
export class MigrationStreamError extends VmmError {
  override readonly name = 'MigrationStreamError';
  readonly code = 'MIGRATION_STREAM';

  /**
   * @param fault what was wrong, as a discriminant for code.
   * @param record the record type's name (`'RAM_PAGES'`), `'type 0x42'` for an unknown type,
   *   `'preamble'`, or `'end of stream'` where a record was required.
   * @param offset the stream offset of the record's (or preamble's) first byte.
   * @param detail the words after the colon.
   */
  constructor(
    readonly fault: StreamFault,
    readonly record: string,
    readonly offset: number,
    detail: string,
    options?: ErrorOptions,
  ) {
    const what = /^[A-Z_]+$|^type 0x/.test(record) ? `${record} record` : record;
    super(`migration stream: ${what} at offset ${offset}: ${detail}`, options);
  }
}

/**
 * A migration transport failed: it could not listen or connect, or the connection broke. Names the
 * transport (its address) and carries the system error as `cause`.
 */
export class MigrationTransportError extends VmmError {
  override readonly name = 'MigrationTransportError';
  readonly code = 'MIGRATION_TRANSPORT';
  /** The errno name of the underlying socket error (`'ECONNRESET'`), when there was one. */
  readonly errno?: string;

  /**
   * @param transport the transport's name, e.g. `tcp:127.0.0.1:4444`.
   * @param detail what failed, e.g. `connection lost`.
   */
  constructor(
    readonly transport: string,
    detail: string,
    options?: ErrorOptions,
  ) {
    const cause = options?.cause as (Error & { code?: unknown }) | undefined;
    const errno = typeof cause?.code === 'string' ? cause.code : undefined;
    super(`migration transport ${transport}: ${detail}${cause instanceof Error ? `: ${cause.message}` : ''}`, options);
    this.errno = errno;
  }
}

/**
 * The peer sent nothing for longer than the reader's idle timeout while it waited for bytes.
 * Names the transport, how long it waited, and where in the stream, e.g.
 * `migration transport tcp:10.0.0.2:4444: no bytes for 30004 ms (idle timeout 30000 ms) at stream offset 4136, inside the RAM_PAGES record at offset 4120`.
 */
export class MigrationTimeoutError extends VmmError {
  override readonly name = 'MigrationTimeoutError';
  readonly code = 'MIGRATION_TIMEOUT';

  /**
   * @param transport the transport's name.
   * @param timeoutMs the idle timeout that expired.
   * @param waitedMs how long nothing arrived.
   * @param offset the stream offset of the next byte due.
   * @param record the record it arrives inside, when it is inside one.
   */
  constructor(
    readonly transport: string,
    readonly timeoutMs: number,
    readonly waitedMs: number,
    readonly offset: number,
    readonly record?: { readonly name: string; readonly offset: number },
  ) {
    const inside = record ? `, inside the ${record.name} record at offset ${record.offset}` : ', where a record starts';
    super(`migration transport ${transport}: no bytes for ${Math.round(waitedMs)} ms (idle timeout ${timeoutMs} ms) at stream offset ${offset}${inside}`);
  }
}

/**
 * The worker thread that ran a RAM channel failed on its own (an uncaught error, an exit it did
 * not announce, or it could not start), e.g.
 * `RAM channel connection 1 (tcp:127.0.0.1:4444): its worker thread exited with code 1`.
 */
export class MigrationChannelThreadError extends VmmError {
  override readonly name = 'MigrationChannelThreadError';
  readonly code = 'MIGRATION_CHANNEL_THREAD';

  /**
   * @param connection which channel connection (in the order given or accepted).
   * @param transport the connection's name.
   * @param detail what became of the thread.
   */
  constructor(readonly connection: number, readonly transport: string, detail: string, options?: ErrorOptions) {
    super(`RAM channel connection ${connection} (${transport}): its worker thread ${detail}`, options);
  }
}
