// The VFIO address spaces of one VM (QEMU's vfio_address_spaces list): one per address space
// that has VFIO devices, created on first use.

import type { AddressSpace } from '../memory/address-space.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { VfioAddressSpace } from './vfio-address-space.js';

export class VfioAddressSpaces {
  readonly #spaces = new Map<AddressSpace, VfioAddressSpace>();

  constructor(private readonly memory: GuestMemory) {}

  /** The VFIO address space of `as` (vfio_get_address_space). */
  get(as: AddressSpace): VfioAddressSpace {
    let space = this.#spaces.get(as);
    if (!space) {
      space = new VfioAddressSpace(as, this.memory);
      this.#spaces.set(as, space);
    }
    return space;
  }

  /** Forget `space` once it has no containers (vfio_put_address_space). */
  put(space: VfioAddressSpace): void {
    if (space.containers.length === 0) this.#spaces.delete(space.as);
  }

  /** Every VFIO address space in use. */
  all(): VfioAddressSpace[] {
    return [...this.#spaces.values()];
  }
}
