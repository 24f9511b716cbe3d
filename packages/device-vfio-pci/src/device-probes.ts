// What realize asks a vfio-pci device before migration can plan: its IRQ counts, its migration
// flags (VFIO_DEVICE_FEATURE_MIGRATION) and whether it can log its own DMA (a PROBE of
// DMA_LOGGING_START), as QEMU's vfio_migration_init and vfio_dma_logging_supported do. All of it
// goes through the device's I/O, so a vfio-user device answers the same questions by message.

import { VfioError, vfioMigrationVerdict, type VfioDevice, type VmmEventBus } from '@vmmkit/core';
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIGRATION, VFIO_DEVICE_FEATURE_PROBE,
  vfio_device_feature_migration,
} from '@vmmkit/core/uapi';

/** IRQ counts for VFIO IRQ indexes 0..n-1, asked one after the other. */
export async function irqCounts(device: VfioDevice, n: number): Promise<number[]> {
  const counts: number[] = [];
  for (let index = 0; index < n; index++) counts.push((await device.io.irqInfo(index)).count);
  return counts;
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
export async function probeMigration(device: VfioDevice): Promise<void> {
  device.migrationFlags = await migrationFlags(device);
  device.dmaLoggingSupported = await supports(device, VFIO_DEVICE_FEATURE_DMA_LOGGING_START | VFIO_DEVICE_FEATURE_PROBE,
    'probe device DMA logging');
}

async function migrationFlags(device: VfioDevice): Promise<number> {
  try {
    const out = await device.io.feature(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION, vfio_device_feature_migration.encode());
    return Number(vfio_device_feature_migration.get(out, 'flags'));
  } catch (e) {
    // ENOTTY: the driver has no migration support.
    if (errnoOf(e) === 'ENOTTY') return 0;
    throw new VfioError('get the migration flags', device.name, { cause: e });
  }
}

/** A PROBE: ENOTTY (unknown feature) and EINVAL (known, not for that access) answer no. */
async function supports(device: VfioDevice, flags: number, step: string): Promise<boolean> {
  try {
    await device.io.feature(flags);
    return true;
  } catch (e) {
    const errno = errnoOf(e);
    if (errno === 'ENOTTY' || errno === 'EINVAL') return false;
    throw new VfioError(step, device.name, { cause: e });
  }
}

function errnoOf(e: unknown): string | undefined {
  return e instanceof VfioError ? e.errno : undefined;
}
