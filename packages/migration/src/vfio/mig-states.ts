// The VFIO migration v2 device states (enum vfio_device_mig_state) as vmmkit reasons about them:
// their names for events and errors; which of them carry a data transfer session is core's
// (the device I/O needs it too).

export { holdsSession, isPrecopyState, sessionContinues } from '@vmmkit/core';

// Indexed by state number, as the uAPI numbers them.
const NAMES = ['ERROR', 'STOP', 'RUNNING', 'STOP_COPY', 'RESUMING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P'] as const;

/** The name of a VFIO_DEVICE_STATE_* value without its prefix (`'PRE_COPY'`), or `'UNKNOWN(<n>)'`. */
export function migStateName(state: number): string {
  return NAMES[state] ?? `UNKNOWN(${state})`;
}
