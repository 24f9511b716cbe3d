// VFIO_DEVICE_FEATURE (vfio_ioctl_device_feature and vfio_check_feature in vfio_main.c): the
// argsz/flags rules, PROBE/GET/SET, the migration features MIGRATION, MIG_DEVICE_STATE and
// MIG_DATA_SIZE, and vfio-pci's own; DMA logging is in dma-logging-ioctl.ts.

import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY,
  VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP, VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, VFIO_DEVICE_FEATURE_MASK,
  VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET, vfio_device_feature, vfio_device_feature_mig_data_size,
  vfio_device_feature_mig_state, vfio_device_feature_migration,
} from '@vmmkit/core/uapi';
import { fail, SimErrno } from '../kernel/sim-errno.js';
import type { SimFile } from '../kernel/sim-file.js';
import type { UserArg } from '../kernel/user-arg.js';
import type { VfioPciCore } from './device-core.js';
import { loggingReport, loggingStart, loggingStop } from './dma-logging-ioctl.js';

/** A feature's payload: the bytes after the vfio_device_feature header. */
export interface FeatureCall {
  readonly core: VfioPciCore;
  readonly flags: number;
  /** argsz minus the header: how much payload the caller claims to pass. */
  readonly argsz: number;
  read(offset: number, length: number): Uint8Array;
  write(offset: number, data: Uint8Array): void;
  /** Install a new file in the fd table (a migration data fd). */
  installFd(file: SimFile): number;
}

const HEADER = vfio_device_feature.size;


/** VFIO_DEVICE_FEATURE. */
export function deviceFeature(core: VfioPciCore, user: UserArg, installFd: (file: SimFile) => number): number {
  const hdr = vfio_device_feature.decode(user.read(0, HEADER));
  if (hdr.argsz < HEADER) fail('EINVAL', `argsz ${hdr.argsz} < ${HEADER}`);
  if (hdr.flags & ~(VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_PROBE)) {
    fail('EINVAL', 'unknown feature flags');
  }
  if (!(hdr.flags & VFIO_DEVICE_FEATURE_PROBE) && hdr.flags & VFIO_DEVICE_FEATURE_SET && hdr.flags & VFIO_DEVICE_FEATURE_GET) {
    fail('EINVAL', 'GET and SET together are only allowed with PROBE');
  }
  const call: FeatureCall = {
    core, flags: hdr.flags, argsz: hdr.argsz - HEADER, installFd,
    read: (offset, length) => user.read(HEADER + offset, length),
    write: (offset, data) => user.write(HEADER + offset, data),
  };
  switch (hdr.flags & VFIO_DEVICE_FEATURE_MASK) {
    case VFIO_DEVICE_FEATURE_MIGRATION: return migrationFeature(call);
    case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE: return migDeviceState(call);
    case VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: return migDataSize(call);
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_START: return loggingStart(call);
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP: return loggingStop(call);
    case VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT: return loggingReport(call);
    default: return driverFeature(call, hdr.flags & VFIO_DEVICE_FEATURE_MASK);
  }
}

/**
 * The driver's own features (device->ops->device_feature). An mdev's driver has none (ENOTTY);
 * vfio-pci's (vfio_pci_core_ioctl_feature) are the VF token, which only an SR-IOV PF has (none
 * here: ENOTTY), and the low-power states, whose arguments are checked as vfio-pci does; entering
 * them is not modelled.
 */
function driverFeature(call: FeatureCall, feature: number): number {
  const lowPower: Record<number, number> = {
    [VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY]: 0, [VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP]: 8, [VFIO_DEVICE_FEATURE_LOW_POWER_EXIT]: 0,
  };
  if (call.core.device.mdev || !(feature in lowPower)) return fail('ENOTTY', `feature ${feature} is not supported`);
  if (!checkFeature(call, VFIO_DEVICE_FEATURE_SET, lowPower[feature]!)) return 0;
  return fail('EOPNOTSUPP', 'low-power states are not modelled by SimHost');
}

/**
 * vfio_check_feature: EINVAL for a GET/SET the feature lacks, or a payload shorter than `minsz`;
 * false when the call was a successful PROBE (nothing more to do), true to go on.
 */
export function checkFeature(call: FeatureCall, supported: number, minsz: number): boolean {
  const ops = call.flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET);
  if (ops & ~supported) fail('EINVAL', 'the feature does not support this GET/SET');
  if (call.flags & VFIO_DEVICE_FEATURE_PROBE) return false;
  if (!ops) fail('EINVAL', 'one of GET or SET is needed without PROBE');
  if (call.argsz < minsz) fail('EINVAL', `payload of ${call.argsz} bytes < ${minsz}`);
  return true;
}

function migration(call: FeatureCall) {
  const mig = call.core.migration;
  if (!mig) fail('ENOTTY', 'the device does not support migration');
  return mig;
}

function migrationFeature(call: FeatureCall): number {
  const mig = migration(call);
  if (!checkFeature(call, VFIO_DEVICE_FEATURE_GET, vfio_device_feature_migration.size)) return 0;
  call.write(0, vfio_device_feature_migration.encode({ flags: BigInt(mig.flags) }));
  return 0;
}

function migDeviceState(call: FeatureCall): number {
  const mig = migration(call);
  const size = vfio_device_feature_mig_state.size;
  if (!checkFeature(call, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_GET, size)) return 0;
  const req = vfio_device_feature_mig_state.decode(call.read(0, size));
  if (call.flags & VFIO_DEVICE_FEATURE_GET) {
    call.write(0, vfio_device_feature_mig_state.encode({ device_state: mig.state, data_fd: -1 }));
    return 0;
  }
  let file;
  try {
    file = mig.setState(req.device_state);
  } catch (e) {
    if (e instanceof SimErrno) call.write(0, vfio_device_feature_mig_state.encode({ device_state: req.device_state, data_fd: -1 }));
    throw e;
  }
  const fd = file ? call.installFd(file) : -1;
  call.write(0, vfio_device_feature_mig_state.encode({ device_state: req.device_state, data_fd: fd }));
  return 0;
}

function migDataSize(call: FeatureCall): number {
  const mig = migration(call);
  if (!checkFeature(call, VFIO_DEVICE_FEATURE_GET, vfio_device_feature_mig_data_size.size)) return 0;
  call.write(0, vfio_device_feature_mig_data_size.encode({ stop_copy_length: mig.dataSize() }));
  return 0;
}
