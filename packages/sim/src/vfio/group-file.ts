// An open /dev/vfio/<group>: a VFIO group, attached to a container to give DMA and device fds.
// Placeholder: the group model lands with the rest of the simulated host.

import type { SimGroup } from '../kernel/sim-group.js';
import type { SimKernel } from '../kernel/sim-kernel.js';
import { SimFile } from '../kernel/sim-file.js';

export class VfioGroupFile extends SimFile {
  readonly kind = 'vfio-group' as const;

  constructor(
    protected readonly kernel: SimKernel,
    readonly group: SimGroup,
  ) {
    super();
  }
}
