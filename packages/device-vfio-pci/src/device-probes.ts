// What realize asks a vfio-pci device before migration can plan: its IRQ counts, its migration
// flags (VFIO_DEVICE_FEATURE_MIGRATION) and whether it can log its own DMA (a PROBE of
// DMA_LOGGING_START), as QEMU's vfio_migration_init and vfio_dma_logging_supported do.

import {
  HostError, VfioError, deviceFeature, probeDeviceFeature, vfioMigrationVerdict, vfioCall, type HostKernel, type
  VfioDevice, type VmmEventBus,
} from '@vmmkit/core';
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_GET_IRQ_INFO, vfio_device_feature_migration, vfio_irq_info,
} from '@vmmkit/core/uapi';

/** IRQ counts for VFIO IRQ indexes 0..n-1. */
export function irqCounts(host: HostKernel, device: VfioDevice, n: number): number[] {
  return Array.from({ length: n }, (_, index) => {
    const arg = vfio_irq_info.encode({ index });
    vfioCall(`get the info of IRQ index ${index}`, device.name, () => host.ioctl(device.fd, VFIO_DEVICE_GET_IRQ_INFO, arg));
    return vfio_irq_info.get(arg, 'count');
  });
}

/**
 * QEMU's vfio_migration_realize verdict: with enable-migration=on a reason that would block
 * migration fails realize instead; a warning (on, without dirty tracking) is reported.
 */
export function checkMigration(device: VfioDevice, events: VmmEventBus): void {
  const verdict = vfioMigrationVerdict(device);
  if (verdict.blocker && device.enableMigration === 'on') throw new VfioError('enable migration', device.name, { detail: verdict.blocker });
  if (verdict.warning) events.emit('vfio:warning', { device: device.name, message: verdict.warning });
}

/** Fill in `device.migrationFlags` and `device.dmaLoggingSupported`. */
export function probeMigration(host: HostKernel, device: VfioDevice): void {
  device.migrationFlags = migrationFlags(host, device);
  device.dmaLoggingSupported = vfioCall('probe device DMA logging', device.name, () =>
    probeDeviceFeature(host, device.fd, VFIO_DEVICE_FEATURE_DMA_LOGGING_START, {}),
  );
}

function migrationFlags(host: HostKernel, device: VfioDevice): number {
  try {
    const out = deviceFeature(host, device.fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION, vfio_device_feature_migration.encode());
    return Number(vfio_device_feature_migration.get(out, 'flags'));
  } catch (e) {
    // ENOTTY: the driver has no migration support.
    if (HostError.is(e, 'ENOTTY')) return 0;
    throw vfioCall('get the migration flags', device.name, () => {
      throw e;
    });
  }
}
