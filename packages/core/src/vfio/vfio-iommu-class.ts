// The contract of a VFIO IOMMU backend (QEMU's VFIOIOMMUClass), and the token backends register
// under. QEMU's class ops that take a container (dma_map, dma_unmap, set_dirty_page_tracking,
// query_dirty_bitmap, setup) are methods of the backend's VfioContainerBase subclass; the ops
// that find or create a container (attach_device, detach_device, pci_hot_reset) are here.

import { token } from '../di/token.js';
import type { VfioAddressSpace } from './vfio-address-space.js';
import type { VfioContainerBase } from './vfio-container-base.js';
import type { VfioDevice } from './vfio-device.js';

/** The built-in backend kinds. Users may register their own under any other name. */
export const VFIO_IOMMU_LEGACY = 'vfio-iommu-legacy';
export const VFIO_IOMMU_IOMMUFD = 'vfio-iommu-iommufd';

/** A VFIO IOMMU backend. One instance per VM, registered by a plugin. */
export interface VfioIommuClass {
  /** The backend's kind, e.g. `'vfio-iommu-legacy'`; devices pick a backend by kind. */
  readonly kind: string;
  /**
   * Attach a device: open it if needed, find a container of this backend in `space` it can join
   * or create one (mapping guest memory into it), and attach. On success `device.fd`,
   * `device.container`, `device.info` and (except for mdevs) `device.hostIommuDevice` are set.
   * On failure everything done is undone and a VfioError names the device, the step and errno.
   * @param name the device's name for messages.
   */
  attachDevice(name: string, device: VfioDevice, space: VfioAddressSpace): Promise<VfioContainerBase>;
  /** Detach a device attached by this backend; frees its container when it was the last device. */
  detachDevice(device: VfioDevice): Promise<void>;
  /**
   * Optional: reset the PCI bus or slot of `device` and the devices sharing it, proving
   * ownership of all of them as this backend requires. `single` asks for a reset that must
   * affect only this device (fails otherwise).
   */
  pciHotReset?(device: VfioDevice, single: boolean): Promise<void>;
}

/** Multi-registration token: every backend a VM can use. */
export const VfioIommuClasses = token<VfioIommuClass>('vfio.iommu-classes');
