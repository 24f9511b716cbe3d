// The VFIO migration v2 state machine's next-hop rule (drivers/vfio/vfio_main.c,
// vfio_mig_get_next_state): which arc a driver takes next on the way from one state to
// another, skipping states the device does not support.

import {
  VFIO_DEVICE_STATE_ERROR as ERROR, VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY, VFIO_DEVICE_STATE_PRE_COPY_P2P as
  PRE_COPY_P2P, VFIO_DEVICE_STATE_RESUMING as RESUMING, VFIO_DEVICE_STATE_RUNNING as RUNNING,
  VFIO_DEVICE_STATE_RUNNING_P2P as RUNNING_P2P, VFIO_DEVICE_STATE_STOP as STOP, VFIO_DEVICE_STATE_STOP_COPY as
  STOP_COPY, VFIO_MIGRATION_P2P, VFIO_MIGRATION_PRE_COPY, VFIO_MIGRATION_STOP_COPY,
} from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';

/** Number of migration states (VFIO_DEVICE_STATE_NR). */
export const VFIO_DEVICE_STATE_NR = 8;

/** The names of the states, by value, for messages. */
export const MIG_STATE_NAMES = ['ERROR', 'STOP', 'RUNNING', 'STOP_COPY', 'RESUMING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P'] as const;

// FROM[cur][target]: the next state on the shortest path when every optional state exists.
// Rows and columns are in state-number order: ERROR, STOP, RUNNING, STOP_COPY, RESUMING,
// RUNNING_P2P, PRE_COPY, PRE_COPY_P2P.
const FROM: readonly (readonly number[])[] = [
  /* ERROR */ [ERROR, ERROR, ERROR, ERROR, ERROR, ERROR, ERROR, ERROR],
  /* STOP */ [ERROR, STOP, RUNNING_P2P, STOP_COPY, RESUMING, RUNNING_P2P, RUNNING_P2P, RUNNING_P2P],
  /* RUNNING */ [ERROR, RUNNING_P2P, RUNNING, RUNNING_P2P, RUNNING_P2P, RUNNING_P2P, PRE_COPY, RUNNING_P2P],
  /* STOP_COPY */ [ERROR, STOP, STOP, STOP_COPY, STOP, STOP, ERROR, ERROR],
  /* RESUMING */ [ERROR, STOP, STOP, STOP, RESUMING, STOP, STOP, STOP],
  /* RUNNING_P2P */ [ERROR, STOP, RUNNING, STOP, STOP, RUNNING_P2P, RUNNING, PRE_COPY_P2P],
  /* PRE_COPY */ [ERROR, RUNNING, RUNNING, PRE_COPY_P2P, RUNNING, RUNNING, PRE_COPY, PRE_COPY_P2P],
  /* PRE_COPY_P2P */ [ERROR, RUNNING_P2P, RUNNING_P2P, STOP_COPY, RUNNING_P2P, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P],
];

// The migration flags a state needs; ERROR needs flags no device has.
const NEEDS: readonly number[] = [
  /* ERROR */ 0xffff_ffff,
  /* STOP */ VFIO_MIGRATION_STOP_COPY,
  /* RUNNING */ VFIO_MIGRATION_STOP_COPY,
  /* STOP_COPY */ VFIO_MIGRATION_STOP_COPY,
  /* RESUMING */ VFIO_MIGRATION_STOP_COPY,
  /* RUNNING_P2P */ VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P,
  /* PRE_COPY */ VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY,
  /* PRE_COPY_P2P */ VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY,
];

/** Whether a device with `flags` supports `state` (ERROR is never a state one can ask for). */
export function migStateSupported(flags: number, state: number): boolean {
  return Number.isInteger(state) && state >= 0 && state < VFIO_DEVICE_STATE_NR && ((NEEDS[state]! & flags) >>> 0) === NEEDS[state];
}

/**
 * The next state from `cur` towards `target` for a device with migration `flags`. EINVAL when
 * the target is not a state the device supports, or cannot be reached (STOP_COPY → PRE_COPY).
 */
export function migNextState(flags: number, cur: number, target: number): number {
  if (!migStateSupported(flags, cur)) fail('EINVAL', `the device is in ${MIG_STATE_NAMES[cur] ?? cur}, which has no arcs`);
  if (!migStateSupported(flags, target)) fail('EINVAL', `the device does not support state ${MIG_STATE_NAMES[target] ?? target}`);
  let next = FROM[cur]![target]!;
  // Arcs through optional states the device lacks are skipped over.
  while (!migStateSupported(flags, next) && next !== ERROR) next = FROM[next]![target]!;
  if (next === ERROR) fail('EINVAL', `${MIG_STATE_NAMES[cur]} cannot reach ${MIG_STATE_NAMES[target]}`);
  return next;
}
