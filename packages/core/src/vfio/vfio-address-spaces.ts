// The VFIO address spaces of one VM (QEMU's vfio_address_spaces list): one per address space
// that has VFIO containers. A space is listed while it has containers, and handed out again
// by `get` while a device is being attached to it.

import type { AddressSpace } from '../memory/address-space.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { VfioAddressSpace, type VfioAddressSpaceOwner } from './vfio-address-space.js';

export class VfioAddressSpaces implements VfioAddressSpaceOwner {
  /** Spaces with containers, and spaces handed out by `get` that have none yet. */
  readonly #spaces = new Map<AddressSpace, VfioAddressSpace>();

  constructor(private readonly memory: GuestMemory) {}

  /** The VFIO address space of `as` (vfio_get_address_space); give it back with `put` if nothing joined it. */
  get(as: AddressSpace): VfioAddressSpace {
    let space = this.#spaces.get(as);
    if (!space) {
      space = new VfioAddressSpace(as, this.memory, this);
      this.#spaces.set(as, space);
    }
    return space;
  }

  /** Forget `space` if it has no containers (vfio_put_address_space), e.g. after a failed attach. */
  put(space: VfioAddressSpace): void {
    if (space.containers.length === 0 && this.#spaces.get(space.as) === space) this.#spaces.delete(space.as);
  }

  /** The VFIO address spaces that have containers. */
  all(): VfioAddressSpace[] {
    return [...this.#spaces.values()].filter((s) => s.containers.length > 0);
  }

  /** @see VfioAddressSpaceOwner */
  inUse(space: VfioAddressSpace): void {
    if (!this.#spaces.has(space.as)) this.#spaces.set(space.as, space);
  }

  /** @see VfioAddressSpaceOwner */
  unused(space: VfioAddressSpace): void {
    this.put(space);
  }
}
