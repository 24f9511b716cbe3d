// `-device guest-iommu,aw-bits=39,dma-translation=on`: the guest IOMMU model as a plugin. It puts
// itself in front of the PCI bus, so it must come before the devices that DMA through it; the
// VMM's guest model (or a test) drives its map and unmap.

import type { DependencyContainer } from 'tsyringe';
import type { VmmPlugin } from '../di/plugin.js';
import { GuestIommu } from '../memory/guest-iommu.js';
import { VmmDeviceTypes, type VmmDevice, type VmmDeviceType } from './vmm-device.js';
import type { OptionSchema } from './options.js';

/** A realized guest IOMMU. */
export interface GuestIommuDevice extends VmmDevice {
  readonly driver: 'guest-iommu';
  /** What the guest maps and unmaps through. */
  readonly iommu: GuestIommu;
}

/** Whether `device` is a guest IOMMU. */
export function isGuestIommuDevice(device: VmmDevice): device is GuestIommuDevice {
  return device.driver === 'guest-iommu' && (device as Partial<GuestIommuDevice>).iommu instanceof GuestIommu;
}

const GUEST_IOMMU_OPTIONS = {
  'aw-bits': { kind: 'uint', doc: 'address width in bits; without it the IOMMU reports no limit' },
  'dma-translation': { kind: 'on-off', doc: 'translate DMA (off: interrupt remapping only)' },
} as const satisfies OptionSchema;

const guestIommuType: VmmDeviceType<typeof GUEST_IOMMU_OPTIONS> = {
  driver: 'guest-iommu',
  options: GUEST_IOMMU_OPTIONS,
  async realize(ctx) {
    const iommu = new GuestIommu(ctx.id, { awBits: ctx.options['aw-bits'], dmaTranslation: ctx.options['dma-translation'] ?? true });
    const bus = ctx.pciBus;
    await bus.setIommu(iommu);
    const device: GuestIommuDevice = {
      id: ctx.id,
      driver: 'guest-iommu',
      name: ctx.id,
      iommu,
      unrealize: () => bus.clearIommu(),
      saveState: () => iommu.save(),
      loadState: (state) => iommu.load(state),
    };
    return device;
  },
};

/** The guest IOMMU device type. */
export function guestIommuPlugin(): VmmPlugin {
  return {
    name: 'guest-iommu',
    register(container: DependencyContainer) {
      container.register(VmmDeviceTypes, { useValue: guestIommuType });
    },
  };
}
