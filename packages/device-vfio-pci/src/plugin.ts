// The vfio-pci device type as a plugin.

import type { DependencyContainer } from 'tsyringe';
import { VmmDeviceTypes, resolveVfioDevice, type VmmDeviceType, type VmmPlugin } from '@vmmkit/core';
import { VfioPciDevice } from './vfio-pci-device.js';
import { VFIO_PCI_OPTIONS, vfioPciOptions } from './vfio-pci-options.js';

const vfioPciType: VmmDeviceType<typeof VFIO_PCI_OPTIONS> = {
  driver: 'vfio-pci',
  options: VFIO_PCI_OPTIONS,
  realize(ctx) {
    const resolved = resolveVfioDevice('-device vfio-pci', ctx.options);
    return VfioPciDevice.realize({
      id: ctx.id,
      host: ctx.host,
      events: ctx.events,
      vfio: ctx.vfio,
      as: ctx.pciBus.deviceAddressSpace(),
      backend: resolved.backend,
      location: resolved.location,
      iommufd: resolved.iommufd === undefined ? undefined : ctx.object(resolved.iommufd),
      options: vfioPciOptions(ctx.options),
    });
  },
};

/** `-device vfio-pci,...`: host devices assigned to the VM through VFIO. */
export function vfioPciPlugin(): VmmPlugin {
  return {
    name: 'device-vfio-pci',
    register(container: DependencyContainer) {
      container.register(VmmDeviceTypes, { useValue: vfioPciType });
    },
  };
}
