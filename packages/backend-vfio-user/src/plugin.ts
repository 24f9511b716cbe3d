// The vfio-user backend as a plugin: the `vfio-iommu-user` container kind.

import type { DependencyContainer } from 'tsyringe';
import { HostKernel, VfioIommuBackends, VmmEventBus, type VmmPlugin } from '@vmmkit/core';
import { VfioUserIommuBackend } from './vfio-user-iommu-backend.js';

/** The vfio-user backend: devices served by another process over a vfio-user socket. */
export function vfioUserPlugin(): VmmPlugin {
  return {
    name: 'backend-vfio-user',
    register(container: DependencyContainer) {
      container.register(VfioIommuBackends, {
        useValue: new VfioUserIommuBackend(container.resolve(HostKernel), container.resolve(VmmEventBus)),
      });
    },
  };
}
