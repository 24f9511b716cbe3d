// The simulated machine the demo, the CLI's --sim mode and the examples run on: two NICs that
// migrate (VFIO migration v2 with PRE_COPY and P2P, device DMA logging) and an edu device, behind
// one IOMMU that tracks dirty IOPTEs.

import type { SimHostConfig } from '@vmmkit/sim';

export const NIC_A = '0000:00:05.0';
export const NIC_B = '0000:00:06.0';
export const EDU = '0000:00:03.0';

export interface DemoMachineOptions {
  /** The NICs log their own DMA (device dirty tracking). Default true. */
  readonly dmaLogging?: boolean;
  /** The IOMMU tracks dirty IOPTEs (IOMMU_HW_CAP_DIRTY_TRACKING). Default true. */
  readonly iommuDirtyTracking?: boolean;
}

export function demoMachine(options: DemoMachineOptions = {}): SimHostConfig {
  const migration = { flags: ['STOP_COPY', 'P2P', 'PRE_COPY'] as const, dmaLogging: options.dmaLogging ?? true };
  return {
    iommus: [{ id: 'iommu0', dirtyTracking: options.iommuDirtyTracking ?? true, awBits: 48 }],
    devices: [
      { bdf: EDU, model: 'edu', group: 3 },
      { bdf: NIC_A, model: 'nic', group: 5, migration: { ...migration, flags: [...migration.flags] } },
      { bdf: NIC_B, model: 'nic', group: 6, migration: { ...migration, flags: [...migration.flags] } },
    ],
  };
}
