// An open VFIO device: from a group (VFIO_GROUP_GET_DEVICE_FD) or a cdev (/dev/vfio/devices/vfio<N>).
// Placeholder: the device model lands with the rest of the simulated host.

import type { SimDevice } from '../kernel/sim-device.js';
import type { SimKernel } from '../kernel/sim-kernel.js';
import { SimFile } from '../kernel/sim-file.js';

export class VfioDeviceFile extends SimFile {
  readonly kind = 'vfio-device' as const;

  constructor(
    protected readonly kernel: SimKernel,
    readonly device: SimDevice,
    readonly via: 'group' | 'cdev',
  ) {
    super();
  }
}
