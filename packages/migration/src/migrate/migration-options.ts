// What a user sets for a migration and what it reports back.

import type { DirtyTrackingStrategy } from '@vmmkit/core';

/** Options of an outgoing migration (QEMU's migration parameters, the ones that matter here). */
export interface MigrationOptions {
  /** The longest the guest may be paused at switchover, in ms (QEMU's downtime-limit). Default 300. */
  readonly downtimeLimitMs?: number;
  /**
   * Precopy iterations before switching over even if the expected downtime is above the limit.
   * Default 30; the result's `converged` says whether the limit was met.
   */
  readonly maxIterations?: number;
  /** At most this many bytes per second on the stream (QEMU's max-bandwidth). Default: unlimited. */
  readonly maxBandwidth?: number;
  /** Cancel the migration: the source runs on as if it never started. */
  readonly signal?: AbortSignal;
}

/** What one container's tracker found over the whole migration. */
export interface ContainerResult {
  readonly container: string;
  readonly backend: string;
  readonly strategy: DirtyTrackingStrategy;
  readonly devices: readonly string[];
  /** Pages this container's tracker reported dirty, over every sync. */
  readonly dirtyPages: number;
}

/** How a migration went, from the source's point of view. */
export interface MigrationResult {
  readonly containers: readonly ContainerResult[];
  /** Precopy passes sent before switching over (the first sends all of RAM). */
  readonly iterations: number;
  /** Whether the expected downtime came under the limit before switching over. */
  readonly converged: boolean;
  /** RAM pages sent as data, and as zero markers. */
  readonly pagesSent: number;
  readonly zeroPages: number;
  /** Device state bytes sent (VFIO data and emulated state). */
  readonly deviceBytes: number;
  /** Stream bytes in total. */
  readonly bytesSent: number;
  /** From pausing the source to telling the destination to start, in ms. */
  readonly downtimeMs: number;
  readonly expectedDowntimeMs: number;
  readonly durationMs: number;
  /** Stream throughput over the migration, bytes per second. */
  readonly throughput: number;
}
