// Whether a VFIO device can migrate, in QEMU's words (vfio_migration_realize and the vIOMMU
// series): the reason that blocks it, or a warning when enable-migration=on overrides the lack
// of dirty tracking. Device models check at realize; migration checks again before it starts.

import { VFIO_MIGRATION_STOP_COPY } from '../uapi/vfio.js';
import type { IommuAttributes } from '../memory/iommu-memory-region.js';
import type { VfioDevice } from './vfio-device.js';
import { deviceLogsDma } from './dirty/dirty-tracking-strategy.js';

/** A device's migration verdict. */
export interface VfioMigrationVerdict {
  /** Why the device blocks migration (with enable-migration=on, realize fails with it). */
  readonly blocker?: string;
  /** Migration goes ahead, but without what it would normally need. */
  readonly warning?: string;
}

/** The vIOMMU blocker of the vIOMMU series: device dirty tracking needs the IOVA space's bounds. */
export const VIOMMU_WITHOUT_BOUNDS =
  'Migration with vIOMMU is currently not supported without vIOMMU address space boundaries';

/** EOPNOTSUPP as QEMU prints it: a device without STOP_COPY cannot be initialized for migration. */
const NOT_SUPPORTED = '-95 (Operation not supported)';

/** The device's verdict, from what its device model probed and its backend set at attach. */
export function vfioMigrationVerdict(device: VfioDevice): VfioMigrationVerdict {
  const name = device.name;
  if (device.enableMigration === 'off') return { blocker: `${name}: Migration is disabled for VFIO device` };
  if (device.migrationFlags === 0) return { blocker: `${name}: ${device.noMigrationReason}` };
  if (!(device.migrationFlags & VFIO_MIGRATION_STOP_COPY)) {
    return { blocker: `${name}: Migration couldn't be initialized for VFIO device, err: ${NOT_SUPPORTED}` };
  }
  let warning: string | undefined;
  const deviceTracking = deviceLogsDma(device);
  if (!deviceTracking && !device.iommuDirtyTracking) {
    const text = `${name}: VFIO device doesn't support device and IOMMU dirty tracking`;
    if (device.enableMigration === 'auto') return { blocker: text };
    warning = text;
  }
  const viommu = translatingGuestIommu(device);
  if (viommu && viommu.maxIova === undefined) return { blocker: VIOMMU_WITHOUT_BOUNDS, warning };
  return { warning };
}

/** The attributes of the guest IOMMU the device DMAs through, when it translates DMA. */
export function translatingGuestIommu(device: VfioDevice): IommuAttributes | undefined {
  for (const s of device.container?.space.as.sections ?? []) {
    if (s.kind === 'iommu' && s.region.attributes.dmaTranslation) return s.region.attributes;
  }
  return undefined;
}
