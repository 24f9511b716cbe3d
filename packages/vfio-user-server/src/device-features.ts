// DEVICE_FEATURE and MIG_DATA_READ / MIG_DATA_WRITE on top of the simulated kernel's generic VFIO
// migration driver (the same state machine arcs and data stream) and its device DMA log (the
// dirty pages of every DMA write the model makes).

import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
  VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_STATE_RUNNING, vfio_device_feature_mig_data_size,
} from '@vmmkit/core/uapi';
import {
  decodeLoggingReport, decodeLoggingStart, decodeMigState, encodeLoggingReport, encodeLoggingStart, encodeMigState,
  encodeMigrationFlags, reportBitmapBytes, type VfioUserFeature,
} from '@vmmkit/core/vfio-user';
import { DmaLogging, SimErrno, VfioMigration, type Census, type LogRange, type SimPciModel, type VfioMigDataFile } from '@vmmkit/sim';
import { refuse, VfioUserRequestError } from './request-error.js';

/** What a feature request answers: the data of a GET (or the echoed data of a SET / PROBE). */
export interface FeatureReply {
  readonly data: Uint8Array;
}

/** Where DMA logging sees writes, and what to log when the client names no range. */
export interface FeatureContext {
  readonly writeObservers: Set<(iova: bigint, length: number) => void>;
  readonly census: Census;
  /** The DMA windows mapped now, to log when DMA_LOGGING_START names no range. */
  windows(): LogRange[];
}

/** The device's migration and dirty-tracking features. */
export class DeviceFeatures {
  readonly #migration: VfioMigration | undefined;
  readonly #logging: DmaLogging;
  #session: VfioMigDataFile | undefined;

  constructor(model: SimPciModel, readonly migrationFlags: number, private readonly context: FeatureContext) {
    this.#migration = migrationFlags && model.migration
      ? new VfioMigration({ flags: migrationFlags, kind: model.kind, migration: model.migration, census: context.census })
      : undefined;
    this.#logging = new DmaLogging(context);
  }

  /** The device's migration state (RUNNING without migration support). */
  get state(): number {
    return this.#migration?.state ?? VFIO_DEVICE_STATE_RUNNING;
  }

  /** DEVICE_FEATURE: answer `f`, or throw VfioUserRequestError. */
  handle(f: VfioUserFeature): FeatureReply {
    const get = (f.flags & VFIO_DEVICE_FEATURE_GET) !== 0;
    const set = (f.flags & VFIO_DEVICE_FEATURE_SET) !== 0;
    const probe = (f.flags & VFIO_DEVICE_FEATURE_PROBE) !== 0;
    const allowed = this.#operations(f.feature);
    if (!allowed) refuse('ENOTTY', `feature ${f.feature} is not supported`);
    if ((get && !allowed.get) || (set && !allowed.set)) refuse('EINVAL', `feature ${f.feature} does not support ${get ? 'GET' : 'SET'}`);
    if (probe) return { data: new Uint8Array(0) };
    return this.#sim(() => {
      switch (f.feature) {
        case VFIO_DEVICE_FEATURE_MIGRATION: return { data: encodeMigrationFlags(this.migrationFlags) };
        case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE:
          if (set) this.#setState(decodeMigState(f.data));
          return { data: encodeMigState(this.#migration!.state) };
        // Not in the specification's list, but a subset of the kernel's it says the features are:
        // without it a client must assume a huge stop-copy size and cannot meet a downtime limit.
        case VFIO_DEVICE_FEATURE_MIG_DATA_SIZE:
          return { data: vfio_device_feature_mig_data_size.encode({ stop_copy_length: this.#migration!.dataSize() }) };
        case VFIO_DEVICE_FEATURE_DMA_LOGGING_START: {
          const start = decodeLoggingStart(f.data);
          const ranges = start.ranges.length ? start.ranges : this.context.windows();
          if (ranges.length === 0) refuse('EINVAL', 'no range to log: none named and no DMA window mapped');
          const pageSize = this.#logging.start(ranges, start.pageSize);
          return { data: encodeLoggingStart({ pageSize, ranges: start.ranges }) };
        }
        case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
          this.#logging.stop();
          return { data: new Uint8Array(0) };
        default: {
          const rep = decodeLoggingReport(f.data, f.argsz);
          const bitmap = new Uint8Array(reportBitmapBytes(rep.length, rep.pageSize));
          this.#logging.reportInto(rep.iova, rep.length, rep.pageSize, [bitmap]);
          return { data: encodeLoggingReport(rep, bitmap) };
        }
      }
    });
  }

  /** MIG_DATA_READ: up to `size` bytes of the saving session's stream (fewer at its end). */
  readData(size: number): Uint8Array {
    const session = this.#session;
    if (!session || session.direction !== 'save') refuse('EINVAL', 'no migration data to read: the device is not saving');
    const buf = new Uint8Array(size);
    let n = 0;
    try {
      n = session.read(buf);
    } catch (e) {
      // No new precopy data yet: an empty read, which tells the client it has all there is.
      if (!(e instanceof SimErrno && e.code === 'ENOMSG')) this.#rethrow(e);
    }
    return buf.subarray(0, n);
  }

  /** MIG_DATA_WRITE: bytes of the stream the destination is resuming from. */
  writeData(data: Uint8Array): void {
    const session = this.#session;
    if (!session || session.direction !== 'resume') refuse('EINVAL', 'no migration data is expected: the device is not resuming');
    this.#sim(() => session.write(data));
  }

  /** DEVICE_RESET: the migration driver returns to RUNNING and ends its session. */
  resetDone(): void {
    this.#migration?.resetDone();
    this.#session = undefined;
  }

  /** The client went away: stop logging its DMA (the windows it logged are gone too). */
  clientGone(): void {
    this.#logging.stop();
  }

  #setState(target: number): void {
    const file = this.#migration!.setState(target);
    if (file) this.#session = file;
  }

  #operations(feature: number): { get: boolean; set: boolean } | undefined {
    const migration = this.#migration !== undefined;
    switch (feature) {
      case VFIO_DEVICE_FEATURE_MIGRATION: return migration ? { get: true, set: false } : undefined;
      case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE: return migration ? { get: true, set: true } : undefined;
      case VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: return migration ? { get: true, set: false } : undefined;
      case VFIO_DEVICE_FEATURE_DMA_LOGGING_START:
      case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP: return { get: false, set: true };
      case VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT: return { get: true, set: false };
      default: return undefined;
    }
  }

  /** Run simulated-kernel code, turning its errno into the reply's. */
  #sim<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      return this.#rethrow(e);
    }
  }

  #rethrow(e: unknown): never {
    if (e instanceof SimErrno) throw new VfioUserRequestError(e.code, e.detail ?? e.code, { cause: e });
    throw e;
  }
}
