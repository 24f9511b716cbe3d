// The DMA logging features of VFIO_DEVICE_FEATURE (vfio_main.c): START with user ranges
// validated by the VFIO core (count, alignment, overflow, overlap), STOP, and REPORT with its
// page size and bitmap rules; the device's log itself is dma-logging.ts.

import {
  VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_SET, vfio_device_feature_dma_logging_control,
  vfio_device_feature_dma_logging_range, vfio_device_feature_dma_logging_report,
} from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import type { DmaLogging, LogRange } from './dma-logging.js';
import { checkFeature, type FeatureCall } from './device-feature.js';

/** Ranges must fit in one kernel page (LOG_MAX_RANGES). */
export const LOG_MAX_RANGES = 4096 / vfio_device_feature_dma_logging_range.size;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

function logging(call: FeatureCall): DmaLogging {
  const log = call.core.logging;
  if (!log) fail('ENOTTY', 'the device does not support DMA logging');
  return log;
}

/** DMA_LOGGING_START. */
export function loggingStart(call: FeatureCall): number {
  const log = logging(call);
  const size = vfio_device_feature_dma_logging_control.size;
  if (!checkFeature(call, VFIO_DEVICE_FEATURE_SET, size)) return 0;
  const control = vfio_device_feature_dma_logging_control.decode(call.read(0, size));
  if (control.num_ranges === 0) fail('EINVAL', 'no ranges');
  if (control.num_ranges > LOG_MAX_RANGES) fail('E2BIG', `${control.num_ranges} ranges > ${LOG_MAX_RANGES}`);
  // A zero page size passes the core's alignment test only for zero ranges; refuse it outright.
  if (control.page_size === 0n) fail('EINVAL', 'page_size is 0');
  const ranges = readRanges(call, control.ranges, control.num_ranges, control.page_size);
  const pageSize = log.start(ranges, control.page_size);
  try {
    call.write(0, vfio_device_feature_dma_logging_control.encode({ ...control, page_size: pageSize }));
  } catch (e) {
    log.stop();
    throw e;
  }
  return 0;
}

/** copy_from_user each range and check it as the VFIO core does. */
function readRanges(call: FeatureCall, at: bigint, n: number, pageSize: bigint): LogRange[] {
  const memory = call.core.kernel.memory;
  const entry = vfio_device_feature_dma_logging_range.size;
  const ranges: LogRange[] = [];
  for (let i = 0; i < n; i++) {
    const r = vfio_device_feature_dma_logging_range.decode(memory.read(at + BigInt(i * entry), entry));
    // IS_ALIGNED(x, page_size) is a mask test, exactly as the kernel writes it.
    if (r.iova & (pageSize - 1n) || r.length & (pageSize - 1n)) fail('EINVAL', `range ${i} is not aligned to page_size`);
    if (r.iova + r.length > U64_MAX) fail('EOVERFLOW', `range ${i} wraps the IOVA space`);
    if (r.length === 0n) fail('EINVAL', `range ${i} is empty`);
    const last = r.iova + r.length - 1n;
    if (ranges.some((q) => r.iova <= q.iova + q.length - 1n && q.iova <= last)) fail('EINVAL', `range ${i} overlaps another`);
    ranges.push(r);
  }
  return ranges;
}

/** DMA_LOGGING_STOP. */
export function loggingStop(call: FeatureCall): number {
  const log = logging(call);
  if (!checkFeature(call, VFIO_DEVICE_FEATURE_SET, 0)) return 0;
  log.stop();
  return 0;
}

/** DMA_LOGGING_REPORT. */
export function loggingReport(call: FeatureCall): number {
  const log = logging(call);
  const size = vfio_device_feature_dma_logging_report.size;
  if (!checkFeature(call, VFIO_DEVICE_FEATURE_GET, size)) return 0;
  const report = vfio_device_feature_dma_logging_report.decode(call.read(0, size));
  const ps = report.page_size;
  if (ps < 4096n || (ps & (ps - 1n)) !== 0n) fail('EINVAL', `page_size ${ps} is not a power of two of at least 4096`);
  if (report.iova + report.length > U64_MAX) fail('EOVERFLOW', 'the range wraps the IOVA space');
  if (report.length === 0n) fail('EINVAL', 'empty range');
  log.report(report.iova, report.length, ps, report.bitmap, call.core.kernel.memory);
  return 0;
}
