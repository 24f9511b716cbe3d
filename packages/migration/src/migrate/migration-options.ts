// What a user sets for a migration and what it reports back.

import type { DirtyTrackingStrategy } from '@vmmkit/core';
import type { MigrationTransport } from '../stream/migration-transport.js';

/** Most RAM channels a migration may have beside its main stream. */
export const MAX_CHANNELS = 16;

/**
 * The connections of a migration with RAM channels: the main stream (SETUP, device state,
 * ordering, the return path) and the channels that carry RAM pages beside it.
 */
export interface MigrationConnections {
  readonly main: MigrationTransport;
  readonly channels: readonly MigrationTransport[];
}

/** Options of an outgoing migration (QEMU's migration parameters, the ones that matter here). */
export interface MigrationOptions {
  /**
   * The longest the guest may be paused at switchover, in ms (QEMU's downtime-limit). Default: the
   * VM's migration parameters (`migrationParameters(vmm)`, 300 unless set).
   */
  readonly downtimeLimitMs?: number;
  /**
   * Precopy iterations before switching over even if the expected downtime is above the limit.
   * Default: the VM's parameters (30 unless set); the result's `converged` says whether the limit was met.
   */
  readonly maxIterations?: number;
  /** At most this many bytes per second on the stream (QEMU's max-bandwidth). Default: the VM's parameters (unlimited unless set). */
  readonly maxBandwidth?: number;
  /** Cancel the migration: the source runs on as if it never started. */
  readonly signal?: AbortSignal;
  /**
   * Checksum the stream end to end (a CRC-32 per pass, a digest per RAM page), so that the
   * destination refuses a corrupted stream before the guest starts instead of running it.
   * Default false: it costs 16-38% of the stream's throughput here, more than the 10% it may
   * cost to be on by default (`npm run bench`, migration stream integrity; docs/migration.md).
   */
  readonly integrity?: boolean;
  /**
   * RAM channels beside the main stream (QEMU's multifd-channels): each pass's pages are dealt
   * out over this many more connections, while device state and the order of passes stay on the
   * main one. Default 0: everything on the main stream. `migrateOutgoing` then takes
   * `{ main, channels }` with exactly this many channels; the destination learns the number
   * from SETUP.
   */
  readonly channels?: number;
  /**
   * Run each RAM channel in a worker thread of its own, sharing guest RAM with it, so that the
   * channels' copies and checksums use more than one core. Default true; it applies where it can:
   * RAM LinuxHost mapped and socket connections (a bandwidth limit is kept by dealing the pages
   * to the workers at its pace). Elsewhere, or with false, the channels run on this thread.
   */
  readonly channelThreads?: boolean;
}

/** The destination's idle timeout unless told otherwise: see {@link IncomingOptions.idleTimeoutMs}. */
export const DEFAULT_INCOMING_IDLE_TIMEOUT_MS = 30_000;

/** Options of an incoming migration. */
export interface IncomingOptions {
  /**
   * Give up when the source sends nothing for this long (ms) while the destination waits for it:
   * for SETUP, inside a record, for the next record, or for GO. The guest stays paused and its
   * devices are reset. 0 or Infinity: wait forever. Default 30 000 — the dead-peer time of
   * libvirt's keepalive (5 s × (5 + 1)), and far above the source's own longest legitimate
   * silences (a READY or LOADED round trip, a dirty sync, the stop of its devices).
   */
  readonly idleTimeoutMs?: number;
  /**
   * Cancel: the destination gives up at once (the source is told), with the same clean-up. Too
   * late once GO has arrived: the source has handed the guest over, and the destination runs it.
   */
  readonly signal?: AbortSignal;
  /**
   * Where the RAM channels a source announces in SETUP come from when they were not given up
   * front, e.g. `() => listener.accept()`: called once per channel after SETUP (the source
   * connects them once its main stream is up; CHANNEL says which is which). A channel that does
   * not come within `idleTimeoutMs` fails the migration.
   */
  readonly acceptChannel?: () => Promise<MigrationTransport>;
  /**
   * Read each RAM channel in a worker thread of its own, receiving pages straight into the shared
   * guest RAM. Default true, where it can (RAM LinuxHost mapped, socket connections); see
   * {@link MigrationOptions.channelThreads}.
   */
  readonly channelThreads?: boolean;
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
