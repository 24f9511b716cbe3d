// An open /dev/iommu: one iommufd context (struct iommufd_ctx) and its object table.
// Placeholder: the iommufd model lands with the rest of the simulated host.

import type { SimDevice } from '../kernel/sim-device.js';
import type { SimKernel } from '../kernel/sim-kernel.js';
import { fail } from '../kernel/sim-errno.js';
import { SimFile } from '../kernel/sim-file.js';

export class IommufdFile extends SimFile {
  readonly kind = 'iommufd' as const;

  constructor(protected readonly kernel: SimKernel) {
    super();
  }

  /** VFIO_DEVICE_BIND_IOMMUFD: bind a device to this context; returns out_devid. */
  bindDevice(_device: SimDevice): number {
    return fail('ENODEV', 'iommufd model not built yet');
  }

  /** Undo a bind (the device fd closed): detaches first if attached. */
  unbindDevice(_devid: number): void {}

  /** VFIO_DEVICE_ATTACH_IOMMUFD_PT: attach to an IOAS (auto domain) or a HWPT; returns the pt_id in use. */
  attachDevice(_devid: number, _ptId: number): number {
    return fail('ENODEV', 'iommufd model not built yet');
  }

  /** VFIO_DEVICE_DETACH_IOMMUFD_PT. */
  detachDevice(_devid: number): void {}

  /** The devid of a device bound to this context (hot reset with DEV_ID), if any. */
  devidOf(_device: SimDevice): number | undefined {
    return undefined;
  }
}
