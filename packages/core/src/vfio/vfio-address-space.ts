// The VFIO view of an address space (QEMU's VFIOAddressSpace): the containers whose DMA mappings
// follow it. Devices in one address space share containers where their backend allows.

import type { AddressSpace } from '../memory/address-space.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { VfioContainerBase } from './vfio-container-base.js';

export class VfioAddressSpace {
  readonly containers: VfioContainerBase[] = [];

  constructor(
    /** The address space devices DMA in (system memory, or a guest IOMMU's). */
    readonly as: AddressSpace,
    /** The guest RAM the address space's sections point into (for dirty logs). */
    readonly memory: GuestMemory,
  ) {}

  /** Containers of one backend kind, oldest first. */
  containersOf(kind: string): VfioContainerBase[] {
    return this.containers.filter((c) => c.iommuClass.kind === kind);
  }
}
