// The example backend as a plugin: register it and devices can ask for it with
// `-device vfio-pci,host=...,vfio-iommu=vfio-iommu-ioas`.

import type { DependencyContainer } from 'tsyringe';
import { HostKernel, VfioIommuBackends, VmmEventBus, type VmmPlugin } from '@vmmkit/core';
import { IoasIommuBackend } from './ioas-iommu-backend.js';

export function ioasBackendPlugin(): VmmPlugin {
  return {
    name: 'backend-ioas-example',
    register(container: DependencyContainer) {
      container.register(VfioIommuBackends, {
        // One backend per VM: its /dev/iommu fd is shared by the VM's devices.
        useValue: new IoasIommuBackend(container.resolve(HostKernel), container.resolve(VmmEventBus)),
      });
    },
  };
}
