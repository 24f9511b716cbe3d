// The iommufd backend as a plugin: the `iommufd` object type and the `vfio-iommu-iommufd` backend.

import type { DependencyContainer } from 'tsyringe';
import { HostKernel, VfioIommuBackends, VmmEventBus, VmmObjectTypes, type VmmPlugin } from '@vmmkit/core';
import { IommufdIommuBackend } from './iommufd-iommu-backend.js';
import { iommufdObjectType } from './iommufd-object-type.js';

/** The iommufd backend: `-object iommufd,id=...` and devices with `iommufd=<id>`. */
export function iommufdPlugin(): VmmPlugin {
  return {
    name: 'backend-iommufd',
    register(container: DependencyContainer) {
      container.register(VmmObjectTypes, { useValue: iommufdObjectType });
      container.register(VfioIommuBackends, {
        useValue: new IommufdIommuBackend(container.resolve(HostKernel), container.resolve(VmmEventBus)),
      });
    },
  };
}
