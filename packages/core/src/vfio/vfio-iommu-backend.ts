// The contract of a VFIO IOMMU backend (QEMU's VFIOIOMMUClass), and the token backends register
// under. QEMU's class ops that work on a container (dma_map, dma_unmap, dirty tracking, setup) are
// the hooks of the backend's VfioContainerBase subclass; the ops that find or create a container
// (attach_device, detach_device, pci_hot_reset) are here. One backend instance serves one VM.

import { token } from '../di/token.js';
import type { VfioAddressSpace } from './vfio-address-space.js';
import type { VfioContainerBase } from './vfio-container-base.js';
import type { VfioDevice } from './vfio-device.js';

/** The built-in backend kinds. Users may register their own under any other name. */
export const VFIO_IOMMU_LEGACY = 'vfio-iommu-legacy';
export const VFIO_IOMMU_IOMMUFD = 'vfio-iommu-iommufd';

/** A VFIO IOMMU backend of one VM, registered by a plugin. */
export interface VfioIommuBackend {
  /** The backend's kind, e.g. `'vfio-iommu-legacy'`; devices pick a backend by kind. */
  readonly kind: string;
  /**
   * Attach a device: open it if needed, find a container of this backend in `space` it can join
   * or create and `open()` one, attach in the kernel, then `container.addDevice(device)`. On
   * success `device.fd`, `device.container`, `device.info` and (except for mdevs)
   * `device.hostIommuDevice` are set. On failure everything done is undone and a VfioError names
   * the device, the step and errno.
   * @param name the device's name for messages.
   */
  attachDevice(name: string, device: VfioDevice, space: VfioAddressSpace): Promise<VfioContainerBase>;
  /**
   * Detach a device attached by this backend: `container.removeDevice(device)`, the kernel's
   * detach, and `container.close()` when it was the last device. Every step runs; the first
   * failure is thrown after.
   */
  detachDevice(device: VfioDevice): Promise<void>;
  /**
   * Optional: reset the PCI bus or slot of `device` and the devices sharing it, proving
   * ownership of all of them as this backend requires. `single` asks for a reset that must
   * affect only this device (fails otherwise).
   */
  pciHotReset?(device: VfioDevice, single: boolean): Promise<void>;
}

/** Multi-registration token: every backend a VM can use. */
export const VfioIommuBackends = token<VfioIommuBackend>('vfio.iommu-backends');
