// The iommufd backend as a plugin: the `iommufd` object type and the `vfio-iommu-iommufd` backend.

import { instanceCachingFactory, type DependencyContainer } from 'tsyringe';
import { HostKernel, VfioIommuClasses, VmmEventBus, VmmObjectTypes, type VmmPlugin } from '@vmmkit/core';
import { IommufdIommuClass } from './iommufd-iommu-class.js';
import { iommufdObjectType } from './iommufd-object-type.js';

/** The iommufd backend: `-object iommufd,id=...` and devices with `iommufd=<id>`. */
export function iommufdPlugin(): VmmPlugin {
  return {
    name: 'backend-iommufd',
    register(container: DependencyContainer) {
      container.register(VmmObjectTypes, { useValue: iommufdObjectType });
      container.register(VfioIommuClasses, {
        useFactory: instanceCachingFactory((c) => new IommufdIommuClass(c.resolve(HostKernel), c.resolve(VmmEventBus))),
      });
    },
  };
}
