// How a container's dirty pages are found during migration, decided as QEMU decides it: the
// devices' own DMA logging when every device of the container can log and none has
// x-device-dirty-page-tracking=off, else the container's IOMMU (type1 DIRTY_PAGES, iommufd HWPT
// dirty tracking), else every mapped page counts as dirty at every sync (which only
// enable-migration=on lets through: otherwise the devices block migration).

import type { VfioContainerBase } from '@vmmkit/core';

/** The dirty-tracking strategy of one container. */
export type DirtyTrackingStrategy = 'device' | 'iommu' | 'all-dirty';

/** The strategy QEMU would use for `container`, and why, in words. */
export function containerStrategy(container: VfioContainerBase): { strategy: DirtyTrackingStrategy; reason: string } {
  const devices = container.devices;
  if (devices.length > 0 && container.devicesAllDeviceDirtyTracking()) {
    return { strategy: 'device', reason: 'every device logs its own DMA' };
  }
  if (container.dirtyPagesSupported) {
    const why = devices.some((d) => d.dirtyPagesSupported && d.deviceDirtyPageTracking === 'off')
      ? 'x-device-dirty-page-tracking=off'
      : 'not every device logs its own DMA';
    return { strategy: 'iommu', reason: `${why}; the IOMMU tracks dirty pages` };
  }
  return { strategy: 'all-dirty', reason: 'neither the devices nor the IOMMU track dirty pages: every mapped page counts as dirty' };
}
