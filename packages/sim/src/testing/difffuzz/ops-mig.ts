// The differential fuzzer's device feature operations (drivers/vfio/vfio_main.c, and the driver:
// mtty's migration on the kernel, SimHost's migration driver on its mdev): VFIO_DEVICE_FEATURE for
// migration, device state, data size and DMA logging, and the migration data fds (read, write,
// VFIO_MIG_GET_PRECOPY_INFO).

import {
  VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_MIGRATION, VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET, VFIO_MIG_GET_PRECOPY_INFO, vfio_device_feature_dma_logging_control,
  vfio_device_feature_dma_logging_range, vfio_device_feature_dma_logging_report, vfio_device_feature_mig_data_size,
  vfio_device_feature_mig_state, vfio_device_feature_migration, vfio_precopy_info,
} from '@vmmkit/core/uapi';
import { attempt, decoded, hex, plain, sized } from './call.js';
import { PAGE, type Gen, type OpSpec } from './gen.js';
import { ioctlStruct, SCRATCH, scratchPtr, type A } from './ops-iommufd.js';
import type { HandleKind } from './model.js';
import type { Run } from './run.js';

const F = {
  migration: VFIO_DEVICE_FEATURE_MIGRATION, state: VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, size: VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
  logStart: VFIO_DEVICE_FEATURE_DMA_LOGGING_START, logStop: VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, logReport: VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
} as const;
const [GET, SET, PROBE] = [VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_FEATURE_PROBE];

/** The payload a feature takes, and the access it is used with. */
function featureArgs(g: Gen, feature: number): Record<string, unknown> {
  const usual = feature === F.state ? g.rng.pick([SET, SET, GET]) : feature === F.logStart || feature === F.logStop ? SET : GET;
  const access = g.rng.weighted<number>([[usual, 85], [usual | PROBE, 5], [GET | SET, 3], [usual === GET ? SET : GET, 4], [0, 3]]);
  return {
    access, state: g.rng.weighted<number>([[1, 20], [2, 15], [3, 20], [4, 12], [5, 8], [6, 12], [7, 6], [0, 4], [9, 3]]),
    ranges: Array.from({ length: g.rng.int(3) }, () => [g.iova(), g.length(64n)]), pageSize: g.rng.pick([PAGE, PAGE, 2048n, 3n * PAGE]),
    iova: g.iova(), length: g.length(64n), bitmap: scratchPtr(g, SCRATCH.bitmap),
  };
}

/** The feature's payload bytes. */
function payload(r: Run, feature: number, a: A): Uint8Array {
  switch (feature) {
    case F.migration: return new Uint8Array(vfio_device_feature_migration.size);
    case F.state: return vfio_device_feature_mig_state.encode({ device_state: a.state, data_fd: -1 });
    case F.size: return new Uint8Array(vfio_device_feature_mig_data_size.size);
    case F.logStart: {
      const ranges = a.ranges as [bigint, bigint][];
      ranges.forEach(([iova, length], i) => r.bytes('scratch', Number(SCRATCH.misc) + i * 16, 16).set(vfio_device_feature_dma_logging_range.encode({ iova, length })));
      return vfio_device_feature_dma_logging_control.encode({ page_size: a.pageSize, num_ranges: ranges.length, ranges: r.ptr({ buf: 'scratch', off: SCRATCH.misc }) });
    }
    case F.logReport: return vfio_device_feature_dma_logging_report.encode({ iova: a.iova, length: a.length, page_size: a.pageSize, bitmap: r.ptr(a.bitmap) });
    default: return new Uint8Array(0);
  }
}

const feature: OpSpec = {
  name: 'mig.feature', family: 'migration', weight: 14,
  // Only a SET of the device state can hand out a data fd: to STOP_COPY, RESUMING or a PRE_COPY state.
  makes: (a): Record<string, HandleKind> => (a.feature === F.state && (a.access as number) & SET && [3, 4, 6, 7].includes(a.state as number) ? { data_fd: 'datafd' } : {}),
  gen(g) {
    const id = g.rng.weighted<number>([[F.state, 50], [F.migration, 12], [F.size, 10], [F.logStart, 8], [F.logStop, 5], [F.logReport, 6], [99, 4]]);
    return { device: g.ref('device'), feature: id, ...featureArgs(g, id), size: g.rng.weighted<string>([['exact', 90], ['short', 5], ['long0', 5]]) };
  },
  run(r, s) {
    const a = s.a as A;
    const data = payload(r, a.feature, a);
    const exact = 8 + data.byteLength;
    const bytes = new Uint8Array(exact + 64);
    bytes.set(data, 8);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, a.size === 'short' ? exact - 4 : a.size === 'exact' ? exact : exact + 8, true);
    view.setUint32(4, a.access | a.feature, true);
    const { outcome } = ioctlStruct(r, a.device, VFIO_DEVICE_FEATURE, bytes);
    if (outcome.r !== 'ok' || a.access & PROBE) return plain(outcome);
    const out = bytes.subarray(8);
    switch (a.feature) {
      case F.migration: return plain(outcome, { flags: String(decoded(vfio_device_feature_migration, out).flags) });
      case F.size: return plain(outcome, { stop_copy_length: String(decoded(vfio_device_feature_mig_data_size, out).stop_copy_length) });
      case F.state: {
        const st = decoded(vfio_device_feature_mig_state, out);
        if (a.access & SET) return plain(outcome, { data_fd: st.data_fd >= 0 ? r.madeFd(s.id, 'data_fd', st.data_fd) : String(st.data_fd) });
        return plain(outcome, { device_state: String(st.device_state) });
      }
      default: return plain(outcome);
    }
  },
};

const readData: OpSpec = {
  name: 'mig.read', family: 'migration', weight: 6, needs: 'datafd',
  gen: (g) => ({ fd: g.ref('datafd'), length: g.rng.pick([16, 64, 4096, 65536, 0]) }),
  run(r, s) {
    const a = s.a as A;
    const buf = new Uint8Array(a.length);
    const outcome = attempt(() => r.host.read(r.fd(a.fd), buf));
    if (outcome.r === 'ok' && outcome.v > 0) r.migData.push(buf.slice(0, outcome.v));
    return plain(outcome, outcome.r === 'ok' ? { data: hex(buf.subarray(0, outcome.v)) } : undefined);
  },
};

const writeData: OpSpec = {
  name: 'mig.write', family: 'migration', weight: 4, needs: 'datafd',
  gen: (g) => ({ fd: g.ref('datafd'), what: g.rng.weighted<string>([['saved', 70], ['zeros', 15], ['none', 15]]) }),
  run(r, s) {
    const a = s.a as A;
    // What a VMM writes: the stream it read from the source (here, from this host's own device).
    const bytes = a.what === 'saved' ? Buffer.concat(r.migData.splice(0)) : new Uint8Array(a.what === 'zeros' ? 64 : 0);
    return plain(attempt(() => r.host.write(r.fd(a.fd), bytes)));
  },
};

const precopyInfo: OpSpec = {
  name: 'mig.precopy_info', family: 'migration', weight: 4, needs: 'datafd',
  gen: (g) => ({ fd: g.ref('datafd'), size: g.sizeMode() }),
  run(r, s) {
    const a = s.a as A;
    const bytes = sized(vfio_precopy_info, {}, a.size, 'argsz');
    const { outcome } = ioctlStruct(r, a.fd, VFIO_MIG_GET_PRECOPY_INFO, bytes);
    if (outcome.r !== 'ok') return plain(outcome);
    const info = decoded(vfio_precopy_info, bytes);
    return plain(outcome, { flags: String(info.flags), initial_bytes: String(info.initial_bytes), dirty_bytes: String(info.dirty_bytes) });
  },
};

export const MIG_OPS: readonly OpSpec[] = [feature, readData, writeData, precopyInfo];
