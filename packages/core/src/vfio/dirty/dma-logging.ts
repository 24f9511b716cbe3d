// Device DMA logging (device dirty tracking), VFIO_DEVICE_FEATURE_DMA_LOGGING_*: what QEMU's
// vfio_devices_dma_logging_start/stop/report do for one device. The container's dirty-tracking
// state machine (VfioDirtyTracking) is the only caller: it remembers which devices log.

import type { HostKernel } from '../../host/host-kernel.js';
import { withKernelBuffer } from '../../memory/kernel-buffer.js';
import type { DirtyBitmap } from '../../memory/dirty-bitmap.js';
import { pagesIn } from '../../memory/page-range.js';
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
  VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_SET, vfio_device_feature_dma_logging_control,
  vfio_device_feature_dma_logging_range, vfio_device_feature_dma_logging_report,
} from '../../uapi/vfio.js';
import { deviceFeature } from '../device-feature.js';
import type { VfioDevice } from '../vfio-device.js';
import { vfioCall } from '../vfio-call.js';

/** An IOVA range a device logs its DMA writes in. */
export interface DmaLoggingRange {
  readonly iova: bigint;
  readonly length: bigint;
}

/** Start DMA logging of `ranges` at `pageSize` granularity. Throws VfioError naming the device. */
export async function startDmaLogging(host: HostKernel, device: VfioDevice, ranges: readonly DmaLoggingRange[], pageSize: number): Promise<void> {
  const size = vfio_device_feature_dma_logging_range.size;
  const table = new Uint8Array(ranges.length * size);
  ranges.forEach((r, i) => table.set(vfio_device_feature_dma_logging_range.encode(r), i * size));
  await withKernelBuffer(host, table, (addr) =>
    vfioCall('start device DMA logging', device.name, () =>
      deviceFeature(host, device.fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
        vfio_device_feature_dma_logging_control.encode({ page_size: BigInt(pageSize), num_ranges: ranges.length, ranges: addr }))),
  );
}

/** Stop DMA logging. Throws VfioError naming the device. */
export function stopDmaLogging(host: HostKernel, device: VfioDevice): void {
  vfioCall('stop device DMA logging', device.name, () =>
    deviceFeature(host, device.fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP));
}

/**
 * OR the device's logged writes in [iova, iova + length) into `bitmap.incoming` (bit 0 = iova, one
 * bit per `pageSize`) and clear them in the device. Throws VfioError naming the device.
 */
export async function reportDmaLogging(
  host: HostKernel, device: VfioDevice, bitmap: DirtyBitmap, iova: bigint, length: bigint, pageSize: number,
): Promise<void> {
  const bytes = bitmap.incomingFor(pagesIn(length, pageSize));
  await withKernelBuffer(host, bytes, (addr) =>
    vfioCall('read the device DMA log', device.name, () =>
      deviceFeature(host, device.fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
        vfio_device_feature_dma_logging_report.encode({ iova, length, page_size: BigInt(pageSize), bitmap: addr }))),
  );
}
