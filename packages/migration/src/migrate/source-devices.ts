// The source's devices during a migration: VFIO devices through migration v2 (precopy data, the
// P2P quiesce, stop-copy data), and every device's emulated state at the end — each record
// tagged with the device's index in the SETUP record.

import { FirstFailure, isVfioVmmDevice, type Vmm, type VmmDevice } from '@vmmkit/core';
import type { MigrationStreamWriter } from '../stream/stream-writer.js';
import { isPrecopyState } from '../vfio/mig-states.js';
import { VfioMigration } from '../vfio/vfio-migration.js';
import { migratingDevices } from './setup-description.js';

/** Precopy data one device sends per iteration at most, so that RAM keeps moving. */
const PRECOPY_BUDGET = 64 << 20;

interface SourceDevice {
  readonly index: number;
  readonly device: VmmDevice;
  readonly vfio?: VfioMigration;
}

export class SourceDevices {
  readonly #devices: SourceDevice[];

  constructor(vmm: Vmm) {
    this.#devices = migratingDevices(vmm).map((device, index) => ({
      index,
      device,
      vfio: isVfioVmmDevice(device) ? new VfioMigration(device.vfio, vmm.events) : undefined,
    }));
  }

  /** VFIO devices enter PRE_COPY where they have it (vfio_save_setup). */
  async saveSetup(): Promise<void> {
    for (const d of this.#devices) await d.vfio?.saveSetup();
  }

  /** Bytes the devices would still send at switchover (precopy left plus the stop-copy size). */
  async pendingBytes(): Promise<bigint> {
    let bytes = 0n;
    for (const { vfio } of this.#devices) {
      if (!vfio) continue;
      const info = await vfio.precopyInfo();
      bytes += info.initialBytes + info.dirtyBytes + (await vfio.stopCopySize());
    }
    return bytes;
  }

  /** Send what the devices have ready during precopy (up to a budget each); returns the bytes. */
  async sendPrecopy(writer: MigrationStreamWriter): Promise<number> {
    let bytes = 0;
    for (const d of this.#devices) {
      if (d.vfio && isPrecopyState(d.vfio.state)) bytes += await this.#drain(writer, d, PRECOPY_BUDGET);
    }
    return bytes;
  }

  /** The VM stops: P2P devices quiesce first, then every device stops and streams its final state. */
  async switchover(): Promise<void> {
    for (const d of this.#devices) await d.vfio?.prepareSwitchover();
    for (const d of this.#devices) await d.vfio?.switchover();
  }

  /** Send every device's final data, its end marker, then every emulated state; returns the bytes. */
  async sendStopCopy(writer: MigrationStreamWriter): Promise<number> {
    let bytes = 0;
    for (const d of this.#devices) {
      if (!d.vfio) continue;
      bytes += await this.#drain(writer, d, Infinity);
      await writer.write({ name: 'DEVICE_END', device: d.index });
    }
    for (const d of this.#devices) {
      const state = await d.device.saveState?.();
      if (!state) continue;
      await writer.write({ name: 'DEVICE_CONFIG', device: d.index, payload: state });
      bytes += state.byteLength;
    }
    return bytes;
  }

  /** The migration succeeded: sessions end, the devices stay stopped with the source VM. */
  async finish(): Promise<void> {
    const errors = new FirstFailure();
    for (const d of this.#devices) await errors.runAsync(async () => d.vfio?.saveCleanup());
    errors.rethrow();
  }

  /** The migration failed or was cancelled: every device runs again. Carries on through failures. */
  async resume(): Promise<void> {
    const errors = new FirstFailure();
    for (const d of this.#devices) await errors.runAsync(async () => d.vfio?.resumeRunning());
    errors.rethrow();
  }

  /** Read a device's data until it has nothing more now (or `budget` bytes), as DEVICE_DATA records. */
  async #drain(writer: MigrationStreamWriter, d: SourceDevice, budget: number): Promise<number> {
    let bytes = 0;
    while (bytes < budget) {
      const chunk = await d.vfio!.readChunk();
      if (chunk === 'empty' || chunk === 'end') break;
      // The chunk is a view of the reader's buffer, reused by the next read: the stream gets a copy.
      await writer.write({ name: 'DEVICE_DATA', device: d.index, payload: chunk.slice() });
      bytes += chunk.byteLength;
    }
    return bytes;
  }
}
