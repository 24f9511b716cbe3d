// What migration needs to know of a device before it can plan, asked through the device's I/O
// (ioctls for the kernel, DEVICE_FEATURE messages for vfio-user), as QEMU's vfio_migration_init
// and vfio_dma_logging_supported ask it: the migration flags, and whether the device logs its DMA.

import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIGRATION, VFIO_DEVICE_FEATURE_PROBE,
  vfio_device_feature_migration,
} from '../uapi/vfio.js';
import { VfioError } from '../errors/vmm-error.js';
import type { VfioDevice } from './vfio-device.js';

/**
 * Fill in `device.migrationFlags` (0 when the device has no migration: ENOTTY) and
 * `device.dmaLoggingSupported` (a PROBE of DMA_LOGGING_START; ENOTTY or EINVAL answer no).
 * @throws VfioError naming the device for any other failure (a dead server, a broken reply).
 */
export async function probeMigrationSupport(device: VfioDevice): Promise<void> {
  device.migrationFlags = await migrationFlags(device);
  device.dmaLoggingSupported = await answersYes(() => device.io.feature(VFIO_DEVICE_FEATURE_DMA_LOGGING_START | VFIO_DEVICE_FEATURE_PROBE));
}

async function migrationFlags(device: VfioDevice): Promise<number> {
  let out: Uint8Array;
  try {
    out = await device.io.feature(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION, vfio_device_feature_migration.encode());
  } catch (e) {
    if (e instanceof VfioError && e.errno === 'ENOTTY') return 0;
    throw e instanceof VfioError && e.device === device.name ? e : new VfioError('get the migration flags', device.name, { cause: e });
  }
  return Number(vfio_device_feature_migration.get(out, 'flags'));
}

async function answersYes(probe: () => Promise<unknown>): Promise<boolean> {
  try {
    await probe();
    return true;
  } catch (e) {
    if (e instanceof VfioError && (e.errno === 'ENOTTY' || e.errno === 'EINVAL')) return false;
    throw e;
  }
}
