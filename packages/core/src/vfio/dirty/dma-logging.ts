// Device DMA logging (device dirty tracking), VFIO_DEVICE_FEATURE_DMA_LOGGING_*: what QEMU's
// vfio_devices_dma_logging_start/stop/report do for one device, through the device's I/O (ioctls
// for the kernel, DEVICE_FEATURE messages for vfio-user). The container's dirty-tracking state
// machine (VfioDirtyTracking) is the only caller: it remembers which devices log.

import type { DirtyBitmap } from '../../memory/dirty-bitmap.js';
import { pagesIn } from '../../memory/page-range.js';
import type { VfioDevice } from '../vfio-device.js';
import type { DmaLoggingRange } from '../vfio-device-io.js';

export type { DmaLoggingRange } from '../vfio-device-io.js';

/** Start DMA logging of `ranges` at `pageSize` granularity. Throws VfioError naming the device. */
export async function startDmaLogging(device: VfioDevice, ranges: readonly DmaLoggingRange[], pageSize: number): Promise<void> {
  await device.io.dmaLoggingStart(ranges, pageSize);
}

/** Stop DMA logging. Throws VfioError naming the device. */
export async function stopDmaLogging(device: VfioDevice): Promise<void> {
  await device.io.dmaLoggingStop();
}

/**
 * OR the device's logged writes in [iova, iova + length) into `bitmap.incoming` (bit 0 = iova, one
 * bit per `pageSize`) and clear them in the device. Throws VfioError naming the device.
 */
export async function reportDmaLogging(device: VfioDevice, bitmap: DirtyBitmap, iova: bigint, length: bigint, pageSize: number): Promise<void> {
  await device.io.dmaLoggingReport(iova, length, pageSize, bitmap.incomingFor(pagesIn(length, pageSize)));
}
