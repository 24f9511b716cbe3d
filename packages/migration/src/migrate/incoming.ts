// The destination side of a live migration (QEMU's -incoming and qemu_loadvm_state): check the
// SETUP against this VM, put its VFIO devices in RESUMING, apply records as they come, load
// everything at COMPLETE, and start the guest only on the source's GO. Any failure leaves the
// guest paused with its devices reset, and the source is told why.

import { ConfigError, type Vmm } from '@vmmkit/core';
import { MigrationSupport } from '../plugin.js';
import type { MigrationTransport } from '../stream/migration-transport.js';
import { applyRamRecord } from '../stream/ram-pages.js';
import type { RecordNameOf, StreamRecord } from '../stream/records.js';
import { MigrationStreamReader } from '../stream/stream-reader.js';
import { MigrationStreamWriter } from '../stream/stream-writer.js';
import { closeGently, lastWord } from './close-gently.js';
import { DestinationDevices } from './destination-devices.js';
import { MigrationCancelledError, MigrationFailedError, MigrationRefusedError, type MigrationPhase } from './migration-errors.js';
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
 * transport is the migration's: ended on success, destroyed on failure.
 * The VM migrates until this settles: hotplug and unplug are refused meanwhile, and closing the VM
 * cancels it.
 * @throws ConfigError without migrationPlugin() or with a running VM; MigrationInProgressError
 *   when the VM migrates already; MigrationFailedError otherwise (the guest stays paused, its
 *   VFIO devices reset to RUNNING).
 */
export async function migrateIncoming(vmm: Vmm, transport: MigrationTransport): Promise<IncomingResult> {
  if (!vmm.container.isRegistered(MigrationSupport, true)) {
    transport.destroy();
    throw new ConfigError(`VMM '${vmm.name}' was composed without migrationPlugin()`, 'plugins');
  }
  if (vmm.running) {
    transport.destroy();
    throw new ConfigError(`VMM '${vmm.name}' is running: a migration destination must be created with incoming: true`, 'incoming');
  }
  let ran = false;
  try {
    return await vmm.runMigration('incoming', {}, (signal) => {
      ran = true;
      // Cancelled (the VM closes): the connection goes, and the receiving side fails on it.
      const cancel = (): void => transport.destroy(new MigrationCancelledError('the incoming migration was cancelled'));
      if (signal.aborted) cancel();
      signal.addEventListener('abort', cancel, { once: true });
      return new IncomingMigration(vmm, transport).run().finally(() => signal.removeEventListener('abort', cancel));
    });
  } catch (e) {
    if (!ran) transport.destroy();
    throw e;
  }
}

class IncomingMigration {
  readonly #reader: MigrationStreamReader;
  readonly #writer: MigrationStreamWriter<'return'>;
  #devices: DestinationDevices | undefined;
  #phase: MigrationPhase = 'setup';
  #pages = 0;
  #zeroPages = 0;
  #deviceBytes = 0;

  constructor(private readonly vmm: Vmm, private readonly transport: MigrationTransport) {
    this.#reader = new MigrationStreamReader(transport, { memory: vmm.memory });
    this.#writer = new MigrationStreamWriter(transport, { direction: 'return' });
  }

  async run(): Promise<IncomingResult> {
    try {
      await this.#setup();
      this.#phase = 'precopy';
      await this.#receive();
      this.#phase = 'handover';
      await this.#devices!.load();
      await this.#writer.write({ name: 'LOADED' });
      await this.#expect('GO');
      this.#devices!.start();
    } catch (e) {
      throw await this.#fail(e);
    }
    this.vmm.resume('migrated');
    void this.#writer.end().catch(() => this.transport.destroy());
    const result = { pages: this.#pages, zeroPages: this.#zeroPages, deviceBytes: this.#deviceBytes, bytesReceived: this.#reader.bytesRead };
    this.vmm.events.emit('migration:incoming-completed', result);
    return result;
  }

  async #setup(): Promise<void> {
    const record = await this.#next();
    if (record.name !== 'SETUP') throw this.#unexpected(record, 'SETUP');
    const devices = matchSetup(this.vmm, record.json);
    const loading = new DestinationDevices(this.vmm, devices);
    loading.loadSetup();
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
        case 'RAM_ZERO': {
          const pages = applyRamRecord(this.vmm.memory, record);
          if (record.name === 'RAM_PAGES') this.#pages += pages;
          else this.#zeroPages += pages;
          break;
        }
        case 'DEVICE_DATA':
          devices.data(record.device, record.parts);
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
          break;
        case 'COMPLETE': {
          const sent = [record.ramPages, record.zeroPages, record.deviceBytes];
          const got = [this.#pages, this.#zeroPages, this.#deviceBytes].map(BigInt);
          if (sent.some((n, i) => n !== got[i])) {
            throw new MigrationRefusedError(`COMPLETE says ${sent.join('/')} RAM pages/zero pages/device bytes were sent, ${got.join('/')} arrived`);
          }
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

  /** Reset the devices, tell the source (best effort); returns the error to throw. */
  async #fail(cause: unknown): Promise<MigrationFailedError> {
    const error = new MigrationFailedError('destination', this.#phase, cause);
    await closeGently(this.transport, () => this.#writer.write({ name: 'ERROR', text: lastWord(error) }), () => this.#writer.end());
    try {
      this.#devices?.abort();
    } catch (e) {
      this.vmm.events.emit('vfio:warning', { message: `while undoing a failed migration: ${e instanceof Error ? e.message : String(e)}` });
    }
    this.vmm.events.emit('migration:failed', { side: 'destination', phase: this.#phase, error: error.message });
    return error;
  }
}
