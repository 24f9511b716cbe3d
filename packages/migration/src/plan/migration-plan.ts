// What a migration of the VM would do, known before it starts: for every VFIO container the
// dirty-tracking strategy, for every device whether and how it migrates, and every blocker
// with QEMU's reason text.

import { isVfioVmmDevice, vfioMigrationVerdict, type DirtyTrackingStrategy, type VfioDevice, type Vmm } from '@vmmkit/core';
import { VFIO_MIGRATION_P2P, VFIO_MIGRATION_PRE_COPY, VFIO_MIGRATION_STOP_COPY } from '@vmmkit/core/uapi';
import { STREAM_PAGE_SIZE } from '../stream/records.js';

/** QEMU's global blocker when several devices migrate and one cannot do P2P. */
export const MULTIPLE_DEVICES_WITHOUT_P2P =
  'Multiple VFIO devices migration is supported only if all of them support P2P migration';

/** Something that stops the VM from migrating. */
export interface MigrationBlocker {
  /** The device it is about (its host name), when it is about one. */
  readonly device?: string;
  readonly reason: string;
}

/** How one device migrates. */
export interface PlannedDevice {
  readonly id: string;
  readonly driver: string;
  readonly name: string;
  /** Backed by a VFIO device whose state moves through VFIO migration v2. */
  readonly vfio: boolean;
  /** The device streams its state during precopy (VFIO_MIGRATION_PRE_COPY). */
  readonly precopy: boolean;
  /** The device has the P2P quiescent states (VFIO_MIGRATION_P2P). */
  readonly p2p: boolean;
  /** The container it is attached to. */
  readonly container?: string;
}

/** How one container's dirty pages are found. */
export interface PlannedContainer {
  readonly container: string;
  readonly backend: string;
  readonly strategy: DirtyTrackingStrategy;
  readonly reason: string;
  /** The host names of its devices. */
  readonly devices: readonly string[];
  /** It follows a guest IOMMU's mappings rather than guest RAM directly. */
  readonly guestIommu: boolean;
  /** Dirty pages are synced during precopy (false: only at stop-copy, x-pre-copy-dirty-page-tracking=off). */
  readonly precopySync: boolean;
}

export interface MigrationPlan {
  readonly devices: readonly PlannedDevice[];
  readonly containers: readonly PlannedContainer[];
  /** Empty when the VM can migrate. */
  readonly blockers: readonly MigrationBlocker[];
  /** Migration goes ahead, but without what it would normally need. */
  readonly warnings: readonly string[];
}

/** Plan a migration of `vmm` (QEMU's checks at realize and at migration start, in one place). */
export function planMigration(vmm: Vmm): MigrationPlan {
  const blockers: MigrationBlocker[] = [];
  const warnings: string[] = [];
  const devices = vmm.devices.map((d): PlannedDevice => {
    if (!isVfioVmmDevice(d)) return { id: d.id, driver: d.driver, name: d.name, vfio: false, precopy: false, p2p: false };
    const v = d.vfio;
    const verdict = vfioMigrationVerdict(v);
    if (verdict.blocker && !blockers.some((b) => b.reason === verdict.blocker)) blockers.push({ device: v.name, reason: verdict.blocker });
    if (verdict.warning) warnings.push(verdict.warning);
    return {
      id: d.id, driver: d.driver, name: v.name, vfio: true,
      precopy: (v.migrationFlags & VFIO_MIGRATION_PRE_COPY) !== 0,
      p2p: (v.migrationFlags & VFIO_MIGRATION_P2P) !== 0,
      container: v.container?.id,
    };
  });
  const migratable = vmm.devices.filter(isVfioVmmDevice).map((d) => d.vfio).filter(initializesMigration);
  if (migratable.length > 1 && migratable.some((v) => !(v.migrationFlags & VFIO_MIGRATION_P2P))) {
    blockers.push({ reason: MULTIPLE_DEVICES_WITHOUT_P2P });
  }
  const containers = vmm.vfio.containers.map((c): PlannedContainer => {
    const { strategy, reason } = c.dirtyTracking.decide();
    // A device that may not go all-dirty (enable-migration=auto) in a container that would:
    // the container's decision, not the device's own abilities, is what the migration gets.
    if (strategy === 'all-dirty') {
      for (const d of c.devices) {
        const reason = `${d.name}: VFIO device doesn't support device and IOMMU dirty tracking`;
        if (d.enableMigration === 'auto' && !blockers.some((b) => b.reason === reason)) blockers.push({ device: d.name, reason });
      }
    }
    return {
      container: c.id, backend: c.backend.kind, strategy, reason,
      devices: c.devices.map((d) => d.name),
      guestIommu: c.space.as.sections.some((s) => s.kind === 'iommu'),
      precopySync: c.devices.every((d) => d.preCopyDirtyPageTracking),
    };
  });
  // The stream's RAM records carry 4 KiB pages, and the dirty log has one bit per host page.
  if (vmm.memory.pageSize !== STREAM_PAGE_SIZE) {
    blockers.push({ reason: `guest RAM is in ${vmm.memory.pageSize}-byte host pages; the migration stream carries ${STREAM_PAGE_SIZE}-byte pages` });
  }
  return { devices, containers, blockers, warnings };
}

/** The device's migration was initialized (QEMU keeps a VFIOMigration for it). */
function initializesMigration(v: VfioDevice): boolean {
  return v.enableMigration !== 'off' && (v.migrationFlags & VFIO_MIGRATION_STOP_COPY) !== 0;
}
