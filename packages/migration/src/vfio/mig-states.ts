// The VFIO migration v2 device states (enum vfio_device_mig_state) as vmmkit reasons about them:
// their names for events and errors, and which of them carry a data transfer session.

import {
  VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_PRE_COPY_P2P, VFIO_DEVICE_STATE_RESUMING,
  VFIO_DEVICE_STATE_STOP_COPY,
} from '@vmmkit/core/uapi';

// Indexed by state number, as the uAPI numbers them.
const NAMES = ['ERROR', 'STOP', 'RUNNING', 'STOP_COPY', 'RESUMING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P'] as const;

/** The name of a VFIO_DEVICE_STATE_* value without its prefix (`'PRE_COPY'`), or `'UNKNOWN(<n>)'`. */
export function migStateName(state: number): string {
  return NAMES[state] ?? `UNKNOWN(${state})`;
}

/** PRE_COPY or PRE_COPY_P2P: the device runs while its state streams out (QEMU's vfio_device_state_is_precopy). */
export function isPrecopyState(state: number): boolean {
  return state === VFIO_DEVICE_STATE_PRE_COPY || state === VFIO_DEVICE_STATE_PRE_COPY_P2P;
}

/**
 * Whether a device in `state` has a data transfer session. Every arc out of these states into
 * one that is not among them ends the session in the kernel (PRE_COPY → RUNNING,
 * STOP_COPY → STOP, RESUMING → STOP), which makes the data fd useless.
 */
export function holdsSession(state: number): boolean {
  return isPrecopyState(state) || state === VFIO_DEVICE_STATE_STOP_COPY || state === VFIO_DEVICE_STATE_RESUMING;
}

/**
 * Whether a session open in `from` is still the one open after a change to `to`: only within
 * the saving states that share one stream (PRE_COPY ↔ PRE_COPY_P2P → STOP_COPY). Any other
 * change leaves the session's states on the way, which ends it, even when the kernel's walk
 * then starts a new session (STOP_COPY → STOP → RESUMING).
 */
export function sessionContinues(from: number, to: number): boolean {
  return from === to || (isPrecopyState(from) && (isPrecopyState(to) || to === VFIO_DEVICE_STATE_STOP_COPY));
}
