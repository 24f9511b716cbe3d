// What realize asks a vfio-pci device before migration can plan: its IRQ counts, and the verdict
// on its migration once core's probeMigrationSupport has read the migration flags and DMA-logging
// support (QEMU's vfio_migration_init and vfio_dma_logging_supported), through the device's I/O.

import { VfioError, vfioMigrationVerdict, type VfioDevice, type VmmEventBus } from '@vmmkit/core';

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
