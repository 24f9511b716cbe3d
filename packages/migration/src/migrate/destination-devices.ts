// The destination's devices during a migration: VFIO devices resume through migration v2
// (RESUMING, the data written as it comes, loaded at the end, started on GO), and every
// device's emulated state restored before the guest runs.

import { FirstFailure, isVfioVmmDevice, type Vmm, type VmmDevice } from '@vmmkit/core';
import { VfioMigration } from '../vfio/vfio-migration.js';
import { MigrationRefusedError } from '../migration-errors.js';

interface DestinationDevice {
  readonly device: VmmDevice;
  readonly vfio?: VfioMigration;
  state?: Uint8Array;
  ended: boolean;
}

export class DestinationDevices {
  readonly #devices: DestinationDevice[];

  /** `devices` in stream order (as matched against the SETUP record). */
  constructor(vmm: Vmm, devices: readonly VmmDevice[]) {
    this.#devices = devices.map((device) => ({
      device,
      vfio: isVfioVmmDevice(device) ? new VfioMigration(device.vfio, vmm.events) : undefined,
      ended: false,
    }));
  }

  /** VFIO devices enter RESUMING (vfio_load_setup); undone for all if one fails. */
  async loadSetup(): Promise<void> {
    try {
      for (const d of this.#devices) await d.vfio?.loadSetup();
    } catch (e) {
      await this.abort();
      throw e;
    }
  }

  /** A chunk of a VFIO device's data, written to the device as it arrives. */
  async data(index: number, parts: readonly Uint8Array[]): Promise<void> {
    const d = this.#at(index, 'DEVICE_DATA');
    if (!d.vfio || d.ended) throw new MigrationRefusedError(`DEVICE_DATA for device '${d.device.id}', which ${d.vfio ? 'has ended' : 'is not a VFIO device'}`);
    for (const part of parts) await d.vfio.writeChunk(part);
  }

  /** A VFIO device's data is complete. */
  end(index: number): void {
    const d = this.#at(index, 'DEVICE_END');
    if (!d.vfio || d.ended) throw new MigrationRefusedError(`DEVICE_END for device '${d.device.id}', which ${d.vfio ? 'has ended already' : 'is not a VFIO device'}`);
    d.ended = true;
  }

  /** A device's emulated state, kept until everything is loaded. */
  state(index: number, bytes: Uint8Array): void {
    const d = this.#at(index, 'DEVICE_CONFIG');
    if (!d.device.loadState || d.state) throw new MigrationRefusedError(`DEVICE_CONFIG for device '${d.device.id}', which ${d.state ? 'has one already' : 'has no emulated state'}`);
    d.state = bytes.slice();
  }

  /**
   * Everything arrived: every VFIO device loads its state (and stays stopped), then every
   * emulated state is restored.
   * @throws MigrationRefusedError for a device whose data or state is missing; VfioError when one does not load.
   */
  async load(): Promise<void> {
    for (const d of this.#devices) {
      if (d.vfio && !d.ended) throw new MigrationRefusedError(`device '${d.device.id}': the stream ended without its final data`);
      if (d.device.loadState && !d.state) throw new MigrationRefusedError(`device '${d.device.id}': the stream has no emulated state for it`);
    }
    for (const d of this.#devices) await d.vfio?.finishLoad();
    for (const d of this.#devices) if (d.state) await d.device.loadState!(d.state);
  }

  /** Run every VFIO device (the guest starts next). */
  async start(): Promise<void> {
    for (const d of this.#devices) await d.vfio?.start();
  }

  /** The migration failed here: every VFIO device is reset to a clean RUNNING. Carries on through failures. */
  async abort(): Promise<void> {
    const errors = new FirstFailure();
    for (const d of this.#devices) await errors.runAsync(async () => d.vfio?.abortLoad());
    errors.rethrow();
  }

  #at(index: number, record: string): DestinationDevice {
    const d = this.#devices[index];
    if (!d) throw new MigrationRefusedError(`${record} for device ${index}, but the SETUP record has ${this.#devices.length}`);
    return d;
  }
}
