// The VFIO view of an address space (QEMU's VFIOAddressSpace): the containers whose DMA mappings
// follow it. Containers join and leave it themselves (VfioContainerBase.open / close, as QEMU's
// vfio_address_space_insert); the last one out releases it from its VM's list.

import type { AddressSpace } from '../memory/address-space.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { VfioContainerBase } from './vfio-container-base.js';

/** Told when a space gains its first container or loses its last (VfioAddressSpaces keeps the list). */
export interface VfioAddressSpaceOwner {
  inUse(space: VfioAddressSpace): void;
  unused(space: VfioAddressSpace): void;
}

export class VfioAddressSpace {
  readonly #containers: VfioContainerBase[] = [];

  constructor(
    /** The address space devices DMA in (system memory, or a guest IOMMU's). */
    readonly as: AddressSpace,
    /** The guest RAM the address space's sections point into (for dirty logs). */
    readonly memory: GuestMemory,
    private readonly owner?: VfioAddressSpaceOwner,
  ) {}

  /** The containers following this address space, oldest first. */
  get containers(): readonly VfioContainerBase[] {
    return this.#containers;
  }

  /** Containers of one backend kind, oldest first. */
  containersOf(kind: string): VfioContainerBase[] {
    return this.#containers.filter((c) => c.backend.kind === kind);
  }

  /** A container joins (vfio_address_space_insert). Called by VfioContainerBase.open only. */
  insert(container: VfioContainerBase): void {
    if (this.#containers.includes(container)) return;
    this.#containers.push(container);
    if (this.#containers.length === 1) this.owner?.inUse(this);
  }

  /** A container leaves; the last one out releases the space (vfio_put_address_space). Called by VfioContainerBase.close only. */
  remove(container: VfioContainerBase): void {
    const i = this.#containers.indexOf(container);
    if (i < 0) return;
    this.#containers.splice(i, 1);
    if (this.#containers.length === 0) this.owner?.unused(this);
  }
}
