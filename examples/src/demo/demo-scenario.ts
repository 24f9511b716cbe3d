// What the demo runs for each dirty-tracking strategy: the simulated machine, how the VM's NICs
// are set up, and the guest's workload (the same for every strategy, so runs compare).

import type { SimMachineOptions, TimedGuestOptions } from '@vmmkit/sim';
import type { DemoVmOptions } from '../guest/demo-vm.js';
import type { DemoStrategy } from './demo-args.js';

/** The machine and VM setup that gives every container one strategy. */
export interface DemoScenario {
  readonly strategy: DemoStrategy;
  readonly machine: SimMachineOptions;
  readonly vm: Pick<DemoVmOptions, 'noDeviceDirtyTracking' | 'enableMigration' | 'type1ContainerPath'>;
  /** How it is set up, in words. */
  readonly setup: string;
}

export function demoScenario(strategy: DemoStrategy): DemoScenario {
  switch (strategy) {
    case 'device':
      return { strategy, machine: {}, vm: {}, setup: 'the NICs log their own DMA (VFIO_DEVICE_FEATURE_DMA_LOGGING)' };
    case 'iommu':
      return {
        strategy, machine: {}, vm: { noDeviceDirtyTracking: true },
        setup: 'x-device-dirty-page-tracking=off: type1 VFIO_IOMMU_DIRTY_PAGES for NIC A, iommufd HWPT dirty tracking for NIC B',
      };
    case 'all-dirty':
      // Linux's type1 always offers dirty tracking (it reports every mapped page), so NIC A's type1
      // container is opened on iommufd's VFIO compat container, which offers none.
      return {
        strategy, machine: { dmaLogging: false, iommuDirtyTracking: false }, vm: { enableMigration: true, type1ContainerPath: '/dev/iommu' },
        setup: 'NICs and IOMMU cannot track; enable-migration=on; NIC A\'s type1 container is iommufd\'s compat container (/dev/iommu)',
      };
  }
}

/**
 * The guest's work while it migrates: vCPU stores at random places of a working set (a quarter
 * of RAM, filled with data at boot), and 20000 packets/s into each NIC's ring. Its dirty rate is
 * a fraction of the default bandwidth, so that with device tracking the migration converges in
 * a few passes.
 */
export const DEMO_WORKLOAD: Required<Pick<TimedGuestOptions, 'writeBytesPerSecond' | 'packetsPerSecond' | 'workingSet' | 'seed'>> = {
  writeBytesPerSecond: 384 << 10,
  packetsPerSecond: 20_000,
  workingSet: 0.25,
  seed: 0x5eed_0001,
};
