// The simulated machines vmmkit's tests, examples and benchmarks run on: edu devices and migratable
// nics behind one IOMMU, at fixed PCI addresses, each function in an IOMMU group of its own.

import type { SimDeviceConfig, SimHostConfig, SimMigrationFlag } from '../config.js';

/** The first edu device (group 3). */
export const EDU = '0000:00:03.0';
/** The second edu device (group 4), on machines with two. */
export const EDU2 = '0000:00:04.0';
/** The first nic (group 5). */
export const NIC_A = '0000:00:05.0';
/** The second nic (group 6), on machines with two. */
export const NIC_B = '0000:00:06.0';

/** Every VFIO migration v2 flag the nic model offers. */
export const ALL_MIGRATION_FLAGS: readonly SimMigrationFlag[] = ['STOP_COPY', 'P2P', 'PRE_COPY'];

/** What {@link simMachine} builds. */
export interface SimMachineOptions {
  /** How many edu devices: {@link EDU}, then {@link EDU2}. Default 1. */
  readonly edus?: 0 | 1 | 2;
  /** How many migratable nics: {@link NIC_A}, then {@link NIC_B}. Default 2. */
  readonly nics?: 0 | 1 | 2;
  /** The IOMMU tracks dirty IOPTEs (IOMMU_HW_CAP_DIRTY_TRACKING). Default true. */
  readonly iommuDirtyTracking?: boolean;
  /** The IOMMU's address width. Default 48. */
  readonly awBits?: number;
  /** The nics log their own DMA (VFIO_DEVICE_FEATURE_DMA_LOGGING). Default true. */
  readonly dmaLogging?: boolean;
  /** The nics' migration flags. Default {@link ALL_MIGRATION_FLAGS}. */
  readonly migrationFlags?: readonly SimMigrationFlag[];
}

/**
 * A machine of edu devices and nics behind one IOMMU ('iommu0'), devices in PCI address order
 * (which is also the order of their cdevs, vfio0, vfio1, ...). The default is the demo machine:
 * an edu and two nics that migrate with every flag and log their DMA, behind an IOMMU that tracks
 * dirty IOPTEs.
 */
export function simMachine(options: SimMachineOptions = {}): SimHostConfig {
  const migration = { flags: options.migrationFlags ?? ALL_MIGRATION_FLAGS, dmaLogging: options.dmaLogging ?? true };
  const edus: SimDeviceConfig[] = [{ bdf: EDU, model: 'edu', group: 3 }, { bdf: EDU2, model: 'edu', group: 4 }];
  const nics: SimDeviceConfig[] = [{ bdf: NIC_A, model: 'nic', group: 5, migration }, { bdf: NIC_B, model: 'nic', group: 6, migration }];
  return {
    iommus: [{ id: 'iommu0', dirtyTracking: options.iommuDirtyTracking ?? true, awBits: options.awBits ?? 48 }],
    devices: [...edus.slice(0, options.edus ?? 1), ...nics.slice(0, options.nics ?? 2)],
  };
}

/** Two edu devices in separate groups behind one IOMMU unit that tracks dirty pages. */
export const TWO_EDU_MACHINE: SimHostConfig = simMachine({ edus: 2, nics: 0, awBits: 39 });
