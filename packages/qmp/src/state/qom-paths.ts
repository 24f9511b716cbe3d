// How QMP names the VM's devices (QEMU's QOM tree, qdev_set_id): a device created with an id is
// /machine/peripheral/ID and a client knows it by that id; one created without is anonymous,
// /machine/peripheral-anon/device[N] with the lowest N free when it was created, and a client
// knows it by that path only (query-pci's qdev_id and VFIO_MIGRATION's device-id are empty,
// DEVICE_DELETED has no `device`). vmmkit's VMM gives every device an id; the ones it made up are
// not the client's.

import type { Vmm } from '@vmmkit/core';

const PERIPHERAL = '/machine/peripheral/';
const PERIPHERAL_ANON = '/machine/peripheral-anon/device[';

/** A device that went away, as DEVICE_DELETED names it. */
export type DeletedDevice = { readonly device?: string; readonly path: string };

export class QomPaths {
  /** The anonymous devices' N, by the VMM's id. */
  readonly #anonymous = new Map<string, number>();
  readonly #off: () => void;

  /** @param deleted told once a device is gone, with the names it had. */
  constructor(private readonly vmm: Vmm, deleted: (device: DeletedDevice) => void) {
    for (const d of vmm.devices) this.#realized(d.id);
    const realized = (e: { id: string }): void => this.#realized(e.id);
    const unrealized = (e: { id: string }): void => {
      const gone = this.deleted(e.id);
      this.#anonymous.delete(e.id);
      deleted(gone);
    };
    vmm.events.on('device:realized', realized);
    vmm.events.on('device:unrealized', unrealized);
    this.#off = () => {
      vmm.events.off('device:realized', realized);
      vmm.events.off('device:unrealized', unrealized);
    };
  }

  /** The device's canonical QOM path. */
  path(id: string): string {
    const n = this.#anonymous.get(id);
    return n === undefined ? `${PERIPHERAL}${id}` : `${PERIPHERAL_ANON}${n}]`;
  }

  /** The id a client knows the device by: undefined for an anonymous one. */
  clientId(id: string): string | undefined {
    return this.#anonymous.has(id) ? undefined : id;
  }

  /**
   * The VMM's id of the device a client names (device_del's `id`: an id, or a QOM path as QEMU
   * takes it); undefined when there is no such device.
   */
  resolve(idOrPath: string): string | undefined {
    if (!idOrPath.startsWith('/')) return this.vmm.device(idOrPath) && !this.#anonymous.has(idOrPath) ? idOrPath : undefined;
    if (idOrPath.startsWith(PERIPHERAL)) return this.resolve(idOrPath.slice(PERIPHERAL.length));
    const m = /^\/machine\/peripheral-anon\/device\[(\d+)\]$/.exec(idOrPath);
    if (!m) return undefined;
    const n = Number(m[1]);
    return [...this.#anonymous].find(([, k]) => k === n)?.[0];
  }

  /** What DEVICE_DELETED says of device `id`. */
  deleted(id: string): DeletedDevice {
    const device = this.clientId(id);
    return device === undefined ? { path: this.path(id) } : { device, path: this.path(id) };
  }

  dispose(): void {
    this.#off();
  }

  #realized(id: string): void {
    if (!this.vmm.hasGeneratedId(id) || this.#anonymous.has(id)) return;
    const taken = new Set(this.#anonymous.values());
    let n = 0;
    while (taken.has(n)) n++;
    this.#anonymous.set(id, n);
  }
}
