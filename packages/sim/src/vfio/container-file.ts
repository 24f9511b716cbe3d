// An open /dev/vfio/vfio: a legacy VFIO container (type1 / type1v2).
// Placeholder: the container model lands with the rest of the simulated host.

import type { SimKernel } from '../kernel/sim-kernel.js';
import { SimFile } from '../kernel/sim-file.js';

export class VfioContainerFile extends SimFile {
  readonly kind = 'vfio-container' as const;

  constructor(protected readonly kernel: SimKernel) {
    super();
  }
}
