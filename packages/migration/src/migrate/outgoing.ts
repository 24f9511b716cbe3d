// The source side of a live migration (QEMU's migration thread): SETUP, then precopy iterations
// that send dirty RAM and device precopy data until the expected downtime fits the limit, then
// stop-and-copy, and the handover to the destination. Any failure or cancel before the handover
// leaves the source as it was: running, its devices in RUNNING, dirty tracking stopped.

import { ConfigError, type Vmm } from '@vmmkit/core';
import { VmDirtyTracking, type DirtySyncReport } from '../dirty/vm-dirty-tracking.js';
import { planMigration, type MigrationPlan } from '../plan/migration-plan.js';
import { MigrationSupport } from '../plugin.js';
import { BandwidthPacer } from '../stream/bandwidth-pacer.js';
import type { MigrationTransport } from '../stream/migration-transport.js';
import { RamChannelSender, type RamChannelsOut } from '../stream/ram-channels.js';
import { ramChannelThreadsPossible, ThreadedRamChannelSender } from '../stream/ram-channel-threads.js';
import { sendDirtyPages } from '../stream/ram-pages.js';
import { STREAM_PAGE_SIZE } from '../stream/records.js';
import { MigrationStreamWriter } from '../stream/stream-writer.js';
import { MigrationBlockedError, MigrationCancelledError, MigrationFailedError, MigrationTransportError, type MigrationPhase } from '../migration-errors.js';
import { MAX_CHANNELS, type ContainerResult, type MigrationConnections, type MigrationOptions, type MigrationResult } from './migration-options.js';
import { migrationParameters, type MigrationParameters } from './migration-parameters.js';
import { closeGently, LAST_WORD_MS, lastWord } from './close-gently.js';
import { ReturnPath } from './return-path.js';
import { describeSetup } from './setup-description.js';
import { SourceDevices } from './source-devices.js';

/**
 * Migrate `vmm` to the destination at the other end of `transport` (which the migration owns:
 * it is ended on success and destroyed on failure). With `options.channels` RAM channels, give
 * the connections as `{ main, channels }`, the main stream's first: RAM pages travel on the
 * channels, everything else on the main stream. Resolves once the destination runs the guest;
 * the source VM is then paused with its devices stopped, ready to be closed.
 * The VM migrates until this settles: a second migration, hotplug and unplug are refused meanwhile,
 * and closing the VM cancels it.
 * @throws ConfigError without migrationPlugin() or for channels that do not match
 *   `options.channels`; MigrationInProgressError when the VM migrates already;
 *   MigrationBlockedError listing every blocker (nothing was changed in any of these);
 *   MigrationFailedError when it fails or is cancelled (the source runs on).
 */
export async function migrateOutgoing(vmm: Vmm, transport: MigrationTransport | MigrationConnections, options: MigrationOptions = {}): Promise<MigrationResult> {
  const { main, channels } = 'main' in transport ? transport : { main: transport, channels: [] };
  const destroyAll = (): void => [main, ...channels].forEach((t) => t.destroy());
  const count = options.channels ?? 0;
  const refusal = !vmm.container.isRegistered(MigrationSupport, true)
    ? new ConfigError(`VMM '${vmm.name}' was composed without migrationPlugin()`, 'plugins')
    : !(Number.isSafeInteger(count) && count >= 0 && count <= MAX_CHANNELS)
      ? new ConfigError(`channels must be a whole number from 0 to ${MAX_CHANNELS}, got ${count}`, 'channels', String(count))
      : channels.length !== count
        ? new ConfigError(`channels is ${count} but ${channels.length} channel connection(s) were given`, 'channels', String(count))
        : undefined;
  if (refusal) {
    destroyAll();
    throw refusal;
  }
  let ran = false;
  try {
    return await vmm.runMigration('outgoing', options, (signal) => {
      ran = true;
      return runOutgoing(vmm, main, channels, options, signal);
    });
  } catch (e) {
    // Refused before it ran: the transports were given to this migration all the same.
    if (!ran) destroyAll();
    throw e;
  }
}

async function runOutgoing(vmm: Vmm, transport: MigrationTransport, channels: readonly MigrationTransport[], options: MigrationOptions, signal: AbortSignal): Promise<MigrationResult> {
  const plan = planMigration(vmm);
  // One bandwidth limit for all the connections: the caller's, else the VM's parameter, read as
  // the migration goes so that migrate-set-parameters applies to it (as QEMU's does).
  const parameters = migrationParameters(vmm);
  const pacer = new BandwidthPacer(options.maxBandwidth ?? (() => parameters.values.maxBandwidth));
  const writer = new MigrationStreamWriter(transport, { pacer, checksums: options.integrity });
  let sender: RamChannelsOut | undefined;
  try {
    sender = openChannels(vmm, channels, options, pacer);
  } catch (e) {
    // The channels are dropped already; the main stream goes with them.
    transport.destroy();
    throw new MigrationFailedError('source', 'setup', e);
  }
  if (plan.blockers.length > 0) {
    const error = new MigrationBlockedError(plan.blockers);
    sender?.destroy();
    await closeGently(transport, () => writer.write({ name: 'ABORT', text: lastWord(error) }), () => writer.end());
    throw error;
  }
  vmm.events.emit('migration:started', { plan });
  return new OutgoingMigration(vmm, transport, writer, sender, plan, options, signal).run();
}

/** The RAM channels: in worker threads where they can run there (see `channelThreads`), else on this thread. */
function openChannels(vmm: Vmm, channels: readonly MigrationTransport[], options: MigrationOptions, pacer: BandwidthPacer | undefined): RamChannelsOut | undefined {
  if (channels.length === 0) return undefined;
  if (options.channelThreads !== false && ramChannelThreadsPossible(vmm.memory, channels)) {
    return new ThreadedRamChannelSender(channels, { memory: vmm.memory, checksums: options.integrity, pacer });
  }
  return new RamChannelSender(channels.map((t) => new MigrationStreamWriter(t, { pacer, checksums: options.integrity })));
}

/** Why precopy ended: what was dirty and what switching over would cost, at the deciding sync. */
interface SwitchoverDecision {
  readonly converged: boolean;
  readonly expectedDowntimeMs: number;
  readonly dirtyPages: number;
}

class OutgoingMigration {
  readonly #devices: SourceDevices;
  readonly #dirty: VmDirtyTracking;
  readonly #returnPath: ReturnPath;
  readonly #parameters: MigrationParameters;
  readonly #maxIterations: number;
  #phase: MigrationPhase = 'setup';
  #pausedByUs = false;
  /** GO went out: the guest is the destination's unless it says it did not start it. */
  #goSent = false;
  #iteration = 0;
  #pagesSent = 0;
  #zeroPages = 0;
  #deviceBytes = 0;
  #throughput = 0;
  readonly #containerPages = new Map<string, number>();
  readonly #started = performance.now();

  constructor(
    private readonly vmm: Vmm,
    private readonly transport: MigrationTransport,
    private readonly writer: MigrationStreamWriter,
    /** The RAM channels, if the migration has any. */
    private readonly channels: RamChannelsOut | undefined,
    private readonly plan: MigrationPlan,
    private readonly options: MigrationOptions,
    /** The caller's cancel, or the VM closing. */
    private readonly signal: AbortSignal,
  ) {
    this.#devices = new SourceDevices(vmm);
    this.#dirty = new VmDirtyTracking(vmm);
    this.#returnPath = new ReturnPath(transport);
    this.#parameters = migrationParameters(vmm);
    this.#maxIterations = options.maxIterations ?? this.#parameters.values.maxIterations;
  }

  async run(): Promise<MigrationResult> {
    let decision: SwitchoverDecision;
    let downtimeStart: number;
    try {
      await this.writer.write({ name: 'SETUP', json: describeSetup(this.vmm, this.channels?.channels) });
      await this.#wait(this.#returnPath.expect('READY'));
      await this.channels?.open();
      await this.#dirty.start();
      await this.#devices.saveSetup();
      this.#phase = 'precopy';
      decision = await this.#precopy();
      this.#phase = 'stop-copy';
      downtimeStart = performance.now();
      await this.#stopCopy(decision);
      this.#phase = 'handover';
      await this.#wait(this.#returnPath.expect('LOADED'));
      await this.writer.write({ name: 'GO' });
      await this.writer.flush();
      // Past GO the destination may be starting the guest: no cancel, and only its word counts.
      this.#goSent = true;
      await this.#returnPath.expect('STARTED');
    } catch (e) {
      throw await this.#rollback(e);
    }
    // The destination runs the guest from here: the source only tidies up.
    const downtimeMs = performance.now() - downtimeStart;
    await this.#finish();
    const result = this.#result(decision, downtimeMs);
    this.vmm.events.emit('migration:completed', result);
    return result;
  }

  /** Iterate until switching over would keep the guest paused no longer than the limit. */
  async #precopy(): Promise<SwitchoverDecision> {
    for (;;) {
      this.#iteration++;
      this.vmm.events.emit('migration:iteration', { iteration: this.#iteration });
      // Let the guest (vCPUs, devices, the VMM's event loop) run between iterations.
      await new Promise((resolve) => setImmediate(resolve));
      this.#checkAlive();
      // The first iteration sends all of RAM: the log starts full, and nothing is measured yet.
      const { dirtyPages, expectedDowntimeMs } = this.#iteration === 1
        ? { dirtyPages: this.#dirty.dirtyPages(), expectedDowntimeMs: Infinity }
        : await this.#report(await this.#dirty.sync(true), 'precopy');
      if (this.#iteration > 1 && expectedDowntimeMs <= this.#downtimeLimitMs()) return { converged: true, expectedDowntimeMs, dirtyPages };
      if (this.#iteration > this.#maxIterations) return { converged: false, expectedDowntimeMs, dirtyPages };
      await this.#sendPass('precopy', dirtyPages, () => this.#devices.sendPrecopy(this.writer));
      await this.writer.write({ name: 'ITERATION', iteration: this.#iteration, dirtyPages: BigInt(dirtyPages) });
    }
  }

  /** Pause the guest, stop the devices, and send the last dirty pages and every device's state. */
  async #stopCopy(decision: SwitchoverDecision): Promise<void> {
    if (this.vmm.running) {
      this.vmm.pause('migration switchover');
      this.#pausedByUs = true;
    }
    this.vmm.events.emit('migration:switchover', { passes: this.#iteration - 1, ...decision });
    // vCPUs first: their last accesses to the devices complete before the devices stop.
    await this.#dirty.quiesce();
    await this.#devices.switchover();
    // The devices have stopped: this sync is the last word on what they wrote.
    const { dirtyPages } = await this.#report(await this.#dirty.sync(false), 'stop-copy');
    await this.#sendPass('stop-copy', dirtyPages, () => this.#devices.sendStopCopy(this.writer));
    await this.#dirty.stop();
    await this.writer.write({
      name: 'COMPLETE', ramPages: BigInt(this.#pagesSent), zeroPages: BigInt(this.#zeroPages), deviceBytes: BigInt(this.#deviceBytes),
    });
  }

  /** Send every dirty page and what the devices have, measuring the throughput. */
  async #sendPass(phase: 'precopy' | 'stop-copy', dirtyPages: number, sendDevices: () => Promise<number>): Promise<void> {
    const t0 = performance.now();
    const bytes0 = this.#bytesSent();
    let pages = 0;
    let zeroPages = 0;
    const memory = this.vmm.memory;
    for (let i = 0; i < memory.blocks.length; i++) {
      const dirty = this.#dirty.take(i);
      const sent = this.channels ? await this.channels.send(memory, i, dirty) : await sendDirtyPages(this.writer, memory, i, dirty);
      pages += sent.pages;
      zeroPages += sent.zeroPages;
      this.#checkAlive();
    }
    const deviceBytes = await sendDevices();
    // The channels end the pass before the main stream does (ITERATION or COMPLETE follow):
    // passes are numbered as the iterations, the stop-copy pass one past the last.
    await this.channels?.sync(this.#iteration);
    await this.writer.flush();
    const seconds = Math.max(performance.now() - t0, 0.01) / 1000;
    this.#throughput = (this.#bytesSent() - bytes0) / seconds;
    this.#pagesSent += pages;
    this.#zeroPages += zeroPages;
    this.#deviceBytes += deviceBytes;
    this.vmm.events.emit('migration:progress', {
      iteration: this.#iteration, phase, pagesSent: pages, zeroPages, deviceBytes, bytesSent: this.#bytesSent(),
      throughput: this.#throughput, dirtyPages, expectedDowntimeMs: await this.#expectedDowntimeMs(this.#dirty.dirtyPages()),
    });
  }

  /** The caller's limit, else the VM's parameter as it is now (migrate-set-parameters may change it meanwhile). */
  #downtimeLimitMs(): number {
    return this.options.downtimeLimitMs ?? this.#parameters.values.downtimeLimitMs;
  }

  /** Stream bytes written on the main stream and the channels. */
  #bytesSent(): number {
    return this.writer.bytesWritten + (this.channels?.bytesWritten ?? 0);
  }

  /** Time to send `dirtyPages` and the devices' pending state at the measured throughput. */
  async #expectedDowntimeMs(dirtyPages: number): Promise<number> {
    if (this.#throughput <= 0) return Infinity;
    const bytes = dirtyPages * STREAM_PAGE_SIZE + Number(await this.#devices.pendingBytes());
    return (bytes / this.#throughput) * 1000;
  }

  /** Account a sync's findings and say what it found: the pages dirty now, and what sending them would cost. */
  async #report(sync: DirtySyncReport, phase: 'precopy' | 'stop-copy'): Promise<{ dirtyPages: number; expectedDowntimeMs: number }> {
    for (const c of sync.containers) this.#containerPages.set(c.container, (this.#containerPages.get(c.container) ?? 0) + c.pages);
    const expectedDowntimeMs = await this.#expectedDowntimeMs(sync.dirtyPages);
    this.vmm.events.emit('migration:dirty-sync', { iteration: this.#iteration, phase, ...sync, expectedDowntimeMs });
    return { dirtyPages: sync.dirtyPages, expectedDowntimeMs };
  }

  /** Throw if the migration was cancelled or the destination gave up. */
  #checkAlive(): void {
    if (this.signal.aborted) throw new MigrationCancelledError(cancelReason(this.signal));
    this.#returnPath.check();
  }

  /** Wait for `promise`, unless the migration is cancelled first. */
  async #wait<T>(promise: Promise<T>): Promise<T> {
    const signal = this.signal;
    // When the check below throws, `promise` (a reply the return path will refuse too) is waited
    // for by no one: its rejection is handled here rather than left unhandled.
    promise.catch(() => undefined);
    this.#checkAlive();
    let onAbort: () => void = () => {};
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(new MigrationCancelledError(cancelReason(signal)));
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([promise, aborted]);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Undo everything on the source and tell the destination; returns the error to throw. After
   * GO, only a destination that said it did not start (ERROR) gives the guest back: a connection
   * lost then leaves it unknown whether the destination runs the guest, so the source stays
   * paused rather than risk two running copies.
   */
  async #rollback(cause: unknown): Promise<MigrationFailedError> {
    if (this.#goSent && !this.#returnPath.refused) return this.#inDoubt(cause);
    // A connection lost under a write may be the destination giving up: its ERROR says why.
    const why = cause instanceof MigrationTransportError ? ((await this.#returnPath.refusalAfterLoss(LAST_WORD_MS)) ?? cause) : cause;
    const error = new MigrationFailedError('source', this.#phase, why);
    this.channels?.destroy();
    // Nothing of the channels is left once this returns: their threads have exited.
    await this.channels?.settled();
    await closeGently(this.transport, () => this.writer.write({ name: 'ABORT', text: lastWord(error) }), () => this.writer.end());
    const undo = async (step: () => unknown): Promise<void> => {
      try {
        await step();
      } catch (e) {
        this.vmm.events.emit('vfio:warning', { message: `while undoing a failed migration: ${e instanceof Error ? e.message : String(e)}` });
      }
    };
    await undo(() => this.#devices.resume());
    await undo(() => this.#dirty.stop());
    if (this.#pausedByUs) this.vmm.resume('migration failed');
    this.vmm.events.emit('migration:failed', { side: 'source', phase: this.#phase, error: error.message, cancelled: cause instanceof MigrationCancelledError });
    return error;
  }

  /** GO went out and the destination's word never came back. */
  async #inDoubt(cause: unknown): Promise<MigrationFailedError> {
    const error = new MigrationFailedError('source', this.#phase, cause, {
      detail: 'the destination may be running the guest: the source stays paused, its devices stopped',
    });
    this.transport.destroy();
    this.channels?.destroy();
    await this.channels?.settled();
    // As after a migration that completed: the device sessions end, the devices stay stopped.
    await this.#finish();
    this.vmm.events.emit('migration:failed', { side: 'source', phase: this.#phase, error: error.message, cancelled: false });
    return error;
  }

  async #finish(): Promise<void> {
    try {
      await this.#devices.finish();
    } catch (e) {
      this.vmm.events.emit('vfio:warning', { message: `after the migration: ${e instanceof Error ? e.message : String(e)}` });
    }
    void this.writer.end().catch(() => this.transport.destroy());
    void this.channels?.end().catch(() => this.channels!.destroy());
  }

  #result({ converged, expectedDowntimeMs }: SwitchoverDecision, downtimeMs: number): MigrationResult {
    const durationMs = performance.now() - this.#started;
    const containers: ContainerResult[] = this.plan.containers.map((c) => ({
      container: c.container, backend: c.backend, strategy: c.strategy, devices: c.devices, dirtyPages: this.#containerPages.get(c.container) ?? 0,
    }));
    return {
      containers, iterations: this.#iteration - 1, converged, pagesSent: this.#pagesSent, zeroPages: this.#zeroPages,
      deviceBytes: this.#deviceBytes, bytesSent: this.#bytesSent(), downtimeMs, expectedDowntimeMs, durationMs,
      throughput: this.#bytesSent() / (durationMs / 1000),
    };
  }
}

/** Why a migration was cancelled: the VM closing says so; a caller's plain abort is a cancel. */
function cancelReason(signal: AbortSignal): string {
  return signal.reason instanceof ConfigError ? `the migration was cancelled: ${signal.reason.message}` : 'the migration was cancelled';
}
