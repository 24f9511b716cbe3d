// The migration QMP started and reports (QEMU's MigrationState as query-migrate and the MIGRATION
// / MIGRATION_PASS events show it): its status, its numbers, its error, and how to cancel it.
// The VMM runs the migration; this remembers what the client asked for and how it went.

import { isIPv4, isIPv6 } from 'node:net';
import type { Vmm, VmmEvents } from '@vmmkit/core';
import { MigrationCancelledError, MigrationFailedError, type MigrationProgress, type MigrationResult, type SocketAddress } from '@vmmkit/migration';
import { MigrationStats } from './migration-stats.js';

/** The MigrationStatus values vmmkit's migrations go through (qapi/migration.json). */
export type MigrationStatus = 'none' | 'setup' | 'cancelling' | 'cancelled' | 'active' | 'device' | 'completed' | 'failed';

/** Sends an event to the clients. */
export type QmpEmit = (event: string, data?: Record<string, unknown>) => void;

/** The migration capabilities QEMU 11.1 knows (MigrationCapability, as its query-qmp-schema lists them); vmmkit implements `events`. */
export const MIGRATION_CAPABILITIES = [
  'xbzrle', 'rdma-pin-all', 'auto-converge', 'events', 'postcopy-ram', 'x-colo', 'release-ram',
  'return-path', 'pause-before-switchover', 'multifd', 'dirty-bitmaps', 'postcopy-blocktime', 'late-block-activate',
  'x-ignore-shared', 'validate-uuid', 'background-snapshot', 'zero-copy-send', 'postcopy-preempt', 'switchover-ack',
  'dirty-limit', 'mapped-ram',
] as const;
export const SUPPORTED_CAPABILITIES: ReadonlySet<string> = new Set(['events']);

export class MigrationState {
  #status: MigrationStatus = 'none';
  #direction: 'outgoing' | 'incoming' | undefined;
  #stats: MigrationStats | undefined;
  #error: string | undefined;
  /** Where an incoming migration listens (query-migrate's socket-address), until it ends. */
  #listening: SocketAddress | undefined;
  #controller: AbortController | undefined;
  #done: Promise<void> = Promise.resolve();
  /** Capabilities switched on (migrate-set-capabilities). */
  readonly capabilities = new Set<string>();
  readonly #off: () => void;

  constructor(private readonly vmm: Vmm, private readonly emit: QmpEmit) {
    const iteration = (e: { iteration: number }): void => {
      if (e.iteration === 1 && this.#direction === 'outgoing') this.activate();
    };
    const synced = (e: VmmEvents['migration:dirty-sync'][0]): void => {
      const pass = this.#stats?.synced(e.dirtyPages, e.expectedDowntimeMs, e.phase);
      if (pass !== undefined) this.#event('MIGRATION_PASS', { pass });
    };
    // The guest stopped and the devices' state goes out: QEMU 11.1 reports `device` until it completes.
    const switchover = (): void => {
      if (this.#direction === 'outgoing' && this.#status === 'active') this.#set('device');
    };
    const progressed = (e: MigrationProgress): void => this.#stats?.progressed(e);
    const completed = (e: MigrationResult): void => this.#stats?.completed(e);
    vmm.events.on('migration:iteration', iteration);
    vmm.events.on('migration:dirty-sync', synced);
    vmm.events.on('migration:switchover', switchover);
    vmm.events.on('migration:progress', progressed);
    vmm.events.on('migration:completed', completed);
    this.#off = () => {
      vmm.events.off('migration:iteration', iteration);
      vmm.events.off('migration:dirty-sync', synced);
      vmm.events.off('migration:switchover', switchover);
      vmm.events.off('migration:progress', progressed);
      vmm.events.off('migration:completed', completed);
    };
  }

  get status(): MigrationStatus {
    return this.#status;
  }

  /** Whether a migration QMP started has not ended yet. */
  get running(): boolean {
    return this.#controller !== undefined;
  }

  /** Ends when the migration does (its outcome is in the status). */
  get done(): Promise<void> {
    return this.#done;
  }

  /**
   * Start tracking a migration that `body` runs (in the background: the command that starts it
   * has answered by then). `body` gets the signal migrate_cancel aborts.
   */
  start(direction: 'outgoing' | 'incoming', body: (signal: AbortSignal) => Promise<unknown>, listening?: SocketAddress): void {
    const controller = new AbortController();
    this.#controller = controller;
    this.#direction = direction;
    this.#stats = new MigrationStats(this.vmm);
    this.#error = undefined;
    this.#listening = listening;
    this.#set('setup');
    this.#done = body(controller.signal).then(
      () => this.#set('completed'),
      (e: unknown) => {
        this.#error = e instanceof Error ? e.message : String(e);
        this.#set(controller.signal.aborted || cancelled(e) ? 'cancelled' : 'failed');
      },
    ).finally(() => {
      this.#listening = undefined;
      this.#stats?.ended();
      this.#controller = undefined;
    });
  }

  /**
   * The migration is under way (the first pass began; on the destination, the source connected).
   * The log starting full counts as the first sync, without a MIGRATION_PASS: QEMU 11.1's first
   * is `pass: 2`, at the sync that ends the first pass.
   */
  activate(): void {
    if (this.#status !== 'setup') return;
    this.#stats?.active();
    this.#set('active');
  }

  /** migrate_cancel: nothing happens when no migration runs. */
  cancel(): void {
    const controller = this.#controller;
    if (!controller || controller.signal.aborted) return;
    this.#set('cancelling');
    controller.abort();
  }

  /**
   * query-migrate's MigrationInfo. The source's has its times and numbers; the destination's,
   * as QEMU's fill_destination_migration_info, its status and, while the migration is under way,
   * the addresses it listens on: QEMU counts nothing on the receiving side.
   */
  info(): Record<string, unknown> {
    if (this.#status === 'none' || !this.#stats) return {};
    const error = this.#error !== undefined && (this.#status === 'failed' || this.#status === 'cancelled') ? { 'error-desc': this.#error } : {};
    if (this.#direction === 'incoming') {
      return { status: this.#status, ...(this.#listening && { 'socket-address': [qapiSocketAddress(this.#listening)] }), ...error };
    }
    const withVfio = this.vmm.devices.some((d) => 'vfio' in d);
    return { status: this.#status, ...this.#stats.info(this.#status, withVfio), ...error };
  }

  /** Cancel what runs and stop listening (the server closes). */
  async dispose(): Promise<void> {
    this.cancel();
    await this.#done;
    this.#off();
  }

  #set(status: MigrationStatus): void {
    this.#status = status;
    this.#event('MIGRATION', { status });
  }

  /** MIGRATION and MIGRATION_PASS go out only with the `events` capability, as in QEMU. */
  #event(name: string, data: Record<string, unknown>): void {
    if (this.capabilities.has('events')) this.emit(name, data);
  }
}

/** A socket address as QAPI's SocketAddress (qapi/sockets.json): inet's port is a string. */
function qapiSocketAddress(address: SocketAddress): Record<string, string | boolean> {
  if (address.kind === 'unix') return { type: 'unix', path: address.path };
  // QEMU 11.1 says which family a numeric host is.
  const family: Record<string, boolean> = isIPv4(address.host) ? { ipv4: true } : isIPv6(address.host) ? { ipv6: true } : {};
  return { type: 'inet', host: address.host, port: String(address.port), ...family };
}

function cancelled(e: unknown): boolean {
  return e instanceof MigrationCancelledError || (e instanceof MigrationFailedError && e.cause instanceof MigrationCancelledError);
}
