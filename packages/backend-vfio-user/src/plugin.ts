// The vfio-user backend as a plugin: the `vfio-iommu-user` container kind and the device type
// that uses it, vfio-user-pci (QEMU keeps both in hw/vfio-user/).

import type { DependencyContainer } from 'tsyringe';
import { HostKernel, VfioIommuBackends, VmmDeviceTypes, VmmEventBus, type VmmPlugin } from '@vmmkit/core';
import { VfioUserIommuBackend } from './vfio-user-iommu-backend.js';
import { vfioUserPciType } from './vfio-user-pci.js';

/** The vfio-user backend and `-device vfio-user-pci`: devices served by another process over a vfio-user socket. */
export function vfioUserPlugin(): VmmPlugin {
  return {
    name: 'backend-vfio-user',
    register(container: DependencyContainer) {
      container.register(VfioIommuBackends, {
        useValue: new VfioUserIommuBackend(container.resolve(HostKernel), container.resolve(VmmEventBus)),
      });
      container.register(VmmDeviceTypes, { useValue: vfioUserPciType });
    },
  };
}
