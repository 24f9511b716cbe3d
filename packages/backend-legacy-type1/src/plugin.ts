// The legacy type1 backend as a plugin.

import type { DependencyContainer } from 'tsyringe';
import { HostKernel, VfioIommuBackends, VmmEventBus, type VmmPlugin } from '@vmmkit/core';
import { LegacyIommuBackend, type LegacyType1Options } from './legacy-iommu-backend.js';

/**
 * The legacy VFIO backend (`vfio-iommu-legacy`): devices without `iommufd=` attach through their
 * group and a type1 container on `/dev/vfio/vfio`, or iommufd's compat container with
 * `{ containerPath: '/dev/iommu' }`.
 */
export function legacyType1Plugin(options: LegacyType1Options = {}): VmmPlugin {
  return {
    name: 'backend-legacy-type1',
    register(container: DependencyContainer) {
      container.register(VfioIommuBackends, {
        useValue: new LegacyIommuBackend(container.resolve(HostKernel), container.resolve(VmmEventBus), options),
      });
    },
  };
}
