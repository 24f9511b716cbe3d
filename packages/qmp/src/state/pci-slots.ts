// Where each device sits on the guest's PCI bus 0, as query-pci reports it. vmmkit's PciBus models
// DMA, not topology (no guest firmware enumerates it), so the slots are assigned here the way
// QEMU auto-assigns them (the lowest free slot; slot 0 is the host bridge), or where device_add's
// `addr` put the device.

import type { Vmm } from '@vmmkit/core';
import { genericError } from '../protocol/qmp-error.js';
import type { QomPaths } from './qom-paths.js';

/** Slots 0x00..0x1f of one bus; 0 is the host bridge. */
const SLOTS = 32;

export class PciSlots {
  readonly #slotOf = new Map<string, number>();
  readonly #off: () => void;

  constructor(private readonly vmm: Vmm, private readonly paths: QomPaths) {
    for (const d of vmm.devices) this.place(d.id);
    const realized = (e: { id: string }): void => void this.place(e.id);
    const unrealized = (e: { id: string }): void => void this.#slotOf.delete(e.id);
    vmm.events.on('device:realized', realized);
    vmm.events.on('device:unrealized', unrealized);
    this.#off = () => {
      vmm.events.off('device:realized', realized);
      vmm.events.off('device:unrealized', unrealized);
    };
  }

  /** The device's slot. */
  slotOf(id: string): number | undefined {
    return this.#slotOf.get(id);
  }

  /**
   * Check that `addr` (QEMU's `slot[.function]`, hex, e.g. `0x5` or `05.0`) names a free slot;
   * returns the slot.
   * @throws QmpError naming `addr` when it is malformed, a function other than 0, or taken.
   */
  check(addr: string, driver: string): number {
    const m = /^(?:0x)?([0-9a-f]{1,2})(?:\.([0-7]))?$/i.exec(addr);
    const slot = m ? Number.parseInt(m[1]!, 16) : NaN;
    if (!m || slot >= SLOTS) throw genericError(`Property '${driver}.addr' doesn't take value '${addr}'`);
    if (m[2] !== undefined && m[2] !== '0') throw genericError(`Property '${driver}.addr': vmmkit places devices at function 0 only, not '${addr}'`);
    if (slot === 0) throw genericError(`PCI: slot 0 function 0 not available for ${driver}, in use by the host bridge`);
    const user = [...this.#slotOf].find(([, s]) => s === slot)?.[0];
    if (user !== undefined) throw genericError(`PCI: slot ${slot} function 0 not available for ${driver}, in use by ${this.#describe(user)}`);
    return slot;
  }

  /** Put a device at `slot`, or at the lowest free one. */
  place(id: string, slot?: number): number {
    if (slot !== undefined) {
      this.#slotOf.set(id, slot);
      return slot;
    }
    const existing = this.#slotOf.get(id);
    if (existing !== undefined) return existing;
    const taken = new Set(this.#slotOf.values());
    let free = 1;
    while (taken.has(free) && free < SLOTS) free++;
    this.#slotOf.set(id, free);
    return free;
  }

  dispose(): void {
    this.#off();
  }

  /** A device as QEMU names the one in a slot: `driver,id=ID`, or its QOM path when it has no id. */
  #describe(id: string): string {
    const driver = this.vmm.device(id)?.driver ?? 'device';
    const clientId = this.paths.clientId(id);
    return clientId === undefined ? `${driver} ${this.paths.path(id)}` : `${driver},id=${clientId}`;
  }
}
