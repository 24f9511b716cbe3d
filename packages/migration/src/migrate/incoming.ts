// The destination side of a live migration (QEMU's -incoming and qemu_loadvm_state): check the
// SETUP against this VM, put its VFIO devices in RESUMING, apply records as they come, check the
// stream's checksums, load everything at COMPLETE, and start the guest only on the source's GO.
// Any failure, a source silent for too long, or a cancel leaves the guest paused with its devices
// reset, and the source is told why.

import { ConfigError, type Vmm } from '@vmmkit/core';
import { MigrationSupport } from '../plugin.js';
import { CorruptPages } from '../stream/corrupt-pages.js';
import type { MigrationTransport } from '../stream/migration-transport.js';
import { RamChannelReceiver } from '../stream/ram-channels.js';
import type { AppliedRamRecord } from '../stream/ram-channel-read.js';
import { applyRamRecord } from '../stream/ram-pages.js';
import type { RecordNameOf, StreamRecord } from '../stream/records.js';
import { MigrationStreamReader } from '../stream/stream-reader.js';
import { MigrationStreamWriter } from '../stream/stream-writer.js';
import { closeGently, lastWord } from './close-gently.js';
import { DestinationDevices } from './destination-devices.js';
import { MigrationCancelledError, MigrationFailedError, MigrationRefusedError, type MigrationPhase } from '../migration-errors.js';
import { DEFAULT_INCOMING_IDLE_TIMEOUT_MS, MAX_CHANNELS, type IncomingOptions, type MigrationConnections } from './migration-options.js';
import { matchSetup } from './setup-description.js';

/** What the destination received. */
export interface IncomingResult {
  readonly pages: number;
  readonly zeroPages: number;
  readonly deviceBytes: number;
  readonly bytesReceived: number;
}

/**
 * Receive a migration into `vmm`, which must be paused (created with `incoming: true`) and have
 * the same RAM layout and devices as the source. Resolves once the guest runs here. The
 * transports are the migration's: ended on success, destroyed on failure. A source with RAM
 * channels needs them as `{ main, channels }` (as many as its SETUP says; in any order).
 * The VM migrates until this settles: hotplug and unplug are refused meanwhile, and closing the VM
 * cancels it.
 * @throws ConfigError without migrationPlugin(), with a running VM or a bad option;
 *   MigrationInProgressError when the VM migrates already; MigrationFailedError otherwise, its
 *   cause a `MigrationTimeoutError` when the source went silent and a `MigrationCancelledError`
 *   when `signal` fired or the VM closed (the guest stays paused, its VFIO devices reset to RUNNING).
 */
export async function migrateIncoming(vmm: Vmm, transport: MigrationTransport | MigrationConnections, options: IncomingOptions = {}): Promise<IncomingResult> {
  const { main, channels } = 'main' in transport ? transport : { main: transport, channels: [] };
  const refuse = (error: ConfigError): never => {
    for (const t of [main, ...channels]) t.destroy();
    throw error;
  };
  if (!vmm.container.isRegistered(MigrationSupport, true)) refuse(new ConfigError(`VMM '${vmm.name}' was composed without migrationPlugin()`, 'plugins'));
  if (vmm.running) refuse(new ConfigError(`VMM '${vmm.name}' is running: a migration destination must be created with incoming: true`, 'incoming'));
  const idle = options.idleTimeoutMs ?? DEFAULT_INCOMING_IDLE_TIMEOUT_MS;
  if (!(idle >= 0)) refuse(new ConfigError(`idleTimeoutMs must be a number of ms >= 0 (0 or Infinity: none), got ${idle}`, 'idleTimeoutMs'));
  if (channels.length > MAX_CHANNELS) refuse(new ConfigError(`at most ${MAX_CHANNELS} RAM channels, got ${channels.length}`, 'channels'));
  let ran = false;
  try {
    return await vmm.runMigration('incoming', options, (signal) => {
      ran = true;
      return new IncomingMigration(vmm, main, channels, idle, signal, options.acceptChannel, options.channelThreads !== false).run();
    });
  } catch (e) {
    // Refused before it ran: the transports were given to this migration all the same.
    if (!ran) for (const t of [main, ...channels]) t.destroy();
    throw e;
  }
}

class IncomingMigration {
  readonly #reader: MigrationStreamReader;
  readonly #writer: MigrationStreamWriter<'return'>;
  readonly #corrupt: CorruptPages;
  #channels: RamChannelReceiver | undefined;
  /** The channel connections given up front, received once the migration runs. */
  readonly #given: readonly MigrationTransport[];
  /** The last ITERATION's number: the passes the channels have ended. */
  #lastIteration = 0;
  #devices: DestinationDevices | undefined;
  #phase: MigrationPhase = 'setup';
  /** GO arrived: the guest is ours to run, too late to cancel. */
  #committed = false;
  #pages = 0;
  #zeroPages = 0;
  #deviceBytes = 0;

  constructor(
    private readonly vmm: Vmm,
    private readonly transport: MigrationTransport,
    channels: readonly MigrationTransport[],
    private readonly idleTimeoutMs: number,
    private readonly signal: AbortSignal | undefined,
    private readonly acceptChannel: (() => Promise<MigrationTransport>) | undefined,
    /** Read the RAM channels in worker threads where they can be. */
    private readonly threads: boolean,
  ) {
    this.#reader = new MigrationStreamReader(transport, { memory: vmm.memory, idleTimeoutMs });
    this.#writer = new MigrationStreamWriter(transport, { direction: 'return' });
    this.#corrupt = new CorruptPages(vmm.memory);
    this.#given = channels;
  }

  #receiveChannels(channels: readonly MigrationTransport[]): void {
    this.#channels = new RamChannelReceiver(channels, {
      memory: this.vmm.memory, idleTimeoutMs: this.idleTimeoutMs, threads: this.threads,
      onRecord: (record) => this.#counted(record), onFailure: (error) => void this.#channelFailed(error),
    });
  }

  /**
   * Accept the `count` channels SETUP announced (none given up front), each within the idle
   * timeout; a failure destroys those accepted so far.
   */
  async #acceptChannels(count: number): Promise<void> {
    const accepted: MigrationTransport[] = [];
    let gaveUp = false;
    const limit = this.idleTimeoutMs > 0 && this.idleTimeoutMs !== Infinity ? this.idleTimeoutMs : undefined;
    let onAbort = (): void => {};
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(cancelled());
      this.signal?.addEventListener('abort', onAbort, { once: true });
    });
    aborted.catch(() => undefined);
    try {
      for (let i = 0; i < count; i++) {
        // A connection accepted after this gave up is the migration's all the same: destroyed.
        const accepting = this.acceptChannel!().then((t) => (gaveUp && t.destroy(), t));
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<never>((_, reject) => {
          if (limit !== undefined) timer = setTimeout(() => reject(new MigrationRefusedError(`the source announced ${count} RAM channel(s); ${i} connected within ${limit} ms`)), limit);
        });
        try {
          accepted.push(await Promise.race([accepting, late, aborted]));
        } finally {
          clearTimeout(timer);
        }
      }
    } catch (e) {
      gaveUp = true;
      for (const t of accepted) t.destroy();
      throw e;
    } finally {
      this.signal?.removeEventListener('abort', onAbort);
    }
    this.#receiveChannels(accepted);
  }

  /** Account a RAM record applied (from the main stream or a channel). */
  #counted(record: AppliedRamRecord): void {
    this.#corrupt.note(record);
    if (record.name === 'RAM_PAGES') this.#pages += record.count;
    else this.#zeroPages += record.count;
  }

  async run(): Promise<IncomingResult> {
    const cancel = (): void => void this.#cancel();
    this.signal?.addEventListener('abort', cancel, { once: true });
    try {
      if (this.signal?.aborted) throw cancelled();
      if (this.#given.length > 0) this.#receiveChannels(this.#given);
      await this.#setup();
      this.#phase = 'precopy';
      await this.#receive();
      this.#phase = 'handover';
      await this.#devices!.load();
      await this.#writer.write({ name: 'LOADED' });
      await this.#expect('GO');
      this.#committed = true;
      await this.#devices!.start();
    } catch (e) {
      throw await this.#fail(e);
    } finally {
      this.signal?.removeEventListener('abort', cancel);
      this.#reader.stop();
    }
    // The devices run: the guest is this side's now, whatever becomes of the connection.
    this.vmm.resume('migrated');
    void this.#writer.write({ name: 'STARTED' }).then(() => this.#writer.end()).catch(() => this.transport.destroy());
    // The channels' streams end once the source has let go: read them to their end meanwhile.
    void this.#channels?.end().catch(() => this.#channels!.destroy());
    const bytesReceived = this.#reader.bytesRead + (this.#channels?.bytesRead ?? 0);
    const result = { pages: this.#pages, zeroPages: this.#zeroPages, deviceBytes: this.#deviceBytes, bytesReceived };
    this.vmm.events.emit('migration:incoming-completed', result);
    return result;
  }

  async #setup(): Promise<void> {
    const record = await this.#next();
    if (record.name !== 'SETUP') throw this.#unexpected(record, 'SETUP');
    const announced = (record.json as { channels?: unknown } | null)?.channels;
    if (!this.#channels && this.acceptChannel && typeof announced === 'number' && Number.isSafeInteger(announced) && announced > 0 && announced <= MAX_CHANNELS) {
      await this.#acceptChannels(announced);
    }
    const devices = matchSetup(this.vmm, record.json, this.#channels ? this.#channels.channels : 0);
    const loading = new DestinationDevices(this.vmm, devices);
    await loading.loadSetup();
    this.#devices = loading;
    await this.#writer.write({ name: 'READY' });
  }

  /** Apply records until COMPLETE, then check its totals against what arrived. */
  async #receive(): Promise<void> {
    const devices = this.#devices!;
    for (;;) {
      const record = await this.#next();
      switch (record.name) {
        case 'RAM_PAGES':
        case 'RAM_ZERO':
          applyRamRecord(this.vmm.memory, record);
          this.#counted(record);
          break;
        case 'DEVICE_DATA':
          await devices.data(record.device, record.parts);
          this.#deviceBytes += record.parts.reduce((n, p) => n + p.byteLength, 0);
          break;
        case 'DEVICE_END':
          this.#phase = 'stop-copy';
          devices.end(record.device);
          break;
        case 'DEVICE_CONFIG':
          devices.state(record.device, record.payload);
          this.#deviceBytes += record.payload.byteLength;
          break;
        case 'ITERATION':
          // Every channel has ended this pass before the next one's pages may land.
          await this.#channels?.pass(record.iteration);
          this.#lastIteration = record.iteration;
          break;
        case 'COMPLETE': {
          await this.#channels?.pass(this.#lastIteration + 1, true);
          const sent = [record.ramPages, record.zeroPages, record.deviceBytes];
          const got = [this.#pages, this.#zeroPages, this.#deviceBytes].map(BigInt);
          if (sent.some((n, i) => n !== got[i])) {
            throw new MigrationRefusedError(`COMPLETE says ${sent.join('/')} RAM pages/zero pages/device bytes were sent, ${got.join('/')} arrived`);
          }
          // The last pass's checksum held (the reader checked it): every page must be good by now.
          this.#corrupt.check();
          return;
        }
        default:
          throw this.#unexpected(record, 'a RAM, device, ITERATION or COMPLETE record');
      }
    }
  }

  async #expect(name: 'GO'): Promise<void> {
    const record = await this.#next();
    if (record.name !== name) throw this.#unexpected(record, name);
  }

  /** The next record; the end of the stream or an ABORT here is a refusal. */
  async #next(): Promise<StreamRecord<Exclude<RecordNameOf<'forward'>, 'ABORT'>>> {
    const record = await this.#reader.next();
    if (!record) throw new MigrationRefusedError(`the stream ended during ${this.#phase}`);
    if (record.name === 'ABORT') throw new MigrationRefusedError(`the source gave up: ${record.text}`);
    return record;
  }

  #unexpected(record: { name: string; offset: number }, expected: string): MigrationRefusedError {
    return new MigrationRefusedError(`${record.name} record at offset ${record.offset} where ${expected} was due`);
  }

  /**
   * The signal fired: tell the source, then tear the connection down with the cancellation as
   * its error, which ends whatever the migration waits for (a read, a write) with it.
   */
  async #cancel(): Promise<void> {
    if (this.#committed) return;
    const error = cancelled();
    await this.#lastWord(new MigrationFailedError('destination', this.#phase, error));
    this.transport.destroy(error);
    this.#channels?.destroy(error);
  }

  /**
   * A RAM channel failed while the migration may be reading its main stream: as a cancel, tell
   * the source, then end the main stream's wait with the channel's error. After GO the guest is
   * this side's: a channel that fails then changes nothing.
   */
  async #channelFailed(error: unknown): Promise<void> {
    if (this.#committed) return;
    await this.#lastWord(new MigrationFailedError('destination', this.#phase, error));
    this.transport.destroy(error instanceof Error ? error : new MigrationRefusedError(String(error)));
  }

  /** Send ERROR and end this side, or give up on that after a while. */
  #lastWord(error: MigrationFailedError): Promise<void> {
    return closeGently(this.transport, () => this.#writer.write({ name: 'ERROR', text: lastWord(error) }), () => this.#writer.end());
  }

  /**
   * Tell the source (best effort), close the connection (a source that never closes its side
   * must not keep it open), reset the devices; returns the error to throw.
   */
  async #fail(cause: unknown): Promise<MigrationFailedError> {
    // A failed channel is the root of whatever the main stream then saw (its end, an ABORT).
    const error = new MigrationFailedError('destination', this.#phase, this.#channels?.failure ?? cause);
    await this.#lastWord(error);
    this.transport.destroy();
    this.#channels?.destroy();
    if (!this.#channels) for (const t of this.#given) t.destroy();
    // Nothing of the channels is left once this returns: their threads have exited.
    await this.#channels?.settled();
    try {
      await this.#devices?.abort();
    } catch (e) {
      this.vmm.events.emit('vfio:warning', { message: `while undoing a failed migration: ${e instanceof Error ? e.message : String(e)}` });
    }
    this.vmm.events.emit('migration:failed', { side: 'destination', phase: this.#phase, error: error.message, cancelled: cause instanceof MigrationCancelledError });
    return error;
  }
}

const cancelled = (): MigrationCancelledError => new MigrationCancelledError('the migration was cancelled on the destination');
