// How a container's dirty pages are found, decided once for everyone (migration plans, starts,
// syncs and harvests by it), as QEMU decides it: the devices' own DMA logging when every device
// of the container can log and none has x-device-dirty-page-tracking=off, else the IOMMU when
// every device's IO page table tracks dirty pages, else every mapped page counts as dirty at
// every sync (which only enable-migration=on lets through: vfioMigrationVerdict blocks otherwise).

import type { VfioDevice } from '../vfio-device.js';

/** The dirty-tracking strategy of one container. */
export type DirtyTrackingStrategy = 'device' | 'iommu' | 'all-dirty';

/** A strategy and why, in words. */
export interface DirtyTrackingDecision {
  readonly strategy: DirtyTrackingStrategy;
  readonly reason: string;
}

/** The device may log its own DMA: it can, and x-device-dirty-page-tracking is not off. */
export function deviceLogsDma(device: VfioDevice): boolean {
  return device.dmaLoggingSupported && device.deviceDirtyPageTracking !== 'off';
}

/**
 * IOMMU dirty tracking covers a container only when every device's IO page table tracks: a
 * device in a HWPT without dirty tracking, or an mdev on the IOAS itself, would write pages
 * nobody reports (QEMU ORs the HWPTs' support; vmmkit refuses to miss a device's writes).
 */
export function iommuTracksAll(devices: readonly VfioDevice[]): boolean {
  return devices.length > 0 && devices.every((d) => d.iommuDirtyTracking);
}

/** The one decision: the strategy of a container with these devices. */
export function decideDirtyTracking(devices: readonly VfioDevice[]): DirtyTrackingDecision {
  if (devices.length > 0 && devices.every(deviceLogsDma)) return { strategy: 'device', reason: 'every device logs its own DMA' };
  if (iommuTracksAll(devices)) {
    const why = devices.some((d) => d.dmaLoggingSupported && d.deviceDirtyPageTracking === 'off')
      ? 'x-device-dirty-page-tracking=off'
      : 'not every device logs its own DMA';
    return { strategy: 'iommu', reason: `${why}; the IOMMU tracks dirty pages` };
  }
  return { strategy: 'all-dirty', reason: 'neither the devices nor the IOMMU track dirty pages: every mapped page counts as dirty' };
}
