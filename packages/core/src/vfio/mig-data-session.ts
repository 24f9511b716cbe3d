// A migration v2 data transfer session as the device I/O gives it out (QEMU's data_fd and, for
// vfio-user, MIG_DATA_READ / MIG_DATA_WRITE): the kernel hands a data fd from the arc that starts
// a session; vfio-user has no fd and moves the same stream in messages on the device's socket.

import {
  VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_PRE_COPY_P2P, VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_STOP_COPY,
} from '../uapi/vfio.js';

/** What one read of a session gave: bytes, nothing for now (precopy drained), or the end of the stream. */
export type VfioMigReadResult = Uint8Array | 'empty' | 'end';

/** VFIO_MIG_GET_PRECOPY_INFO: what PRE_COPY still has to send (estimates, in bytes). */
export interface VfioPrecopyInfo {
  /** Of the initial state, not read yet. Drivers may want it all sent before switchover. */
  readonly initialBytes: bigint;
  /** Of state that changed since, as far as the driver knows now. */
  readonly dirtyBytes: bigint;
}

/**
 * One data transfer session: from the state change that started it until a change leaves the
 * session's states, a reset, or `close()`. The session's owner (VfioMigration) closes it.
 * Every failure is a `VfioError` naming the device.
 */
export interface VfioMigDataSession {
  /**
   * Read up to `max` bytes of the device's stream (saving states). The bytes may be a view of a
   * buffer the session reuses: valid until the next read. 'empty': PRE_COPY has nothing more
   * for now; 'end': the stream is complete.
   */
  read(max: number): Promise<VfioMigReadResult>;

  /** Write all of `bytes` of the stream the device resumes from (RESUMING). */
  write(bytes: Uint8Array): Promise<void>;

  /**
   * VFIO_MIG_GET_PRECOPY_INFO (PRE_COPY / PRE_COPY_P2P only), or undefined when the transport
   * cannot say (vfio-user defines no such message).
   */
  precopyInfo(): Promise<VfioPrecopyInfo | undefined>;

  /**
   * Release the session (the kernel's data fd). Idempotent. It is released even when this
   * throws (a VfioError for the error close(2) reported).
   */
  close(): void;

  /** The data fd behind the session, or -1 when the transport has none (vfio-user). */
  readonly fd: number;
}

/** PRE_COPY or PRE_COPY_P2P: the device runs while its state streams out (QEMU's vfio_device_state_is_precopy). */
export function isPrecopyState(state: number): boolean {
  return state === VFIO_DEVICE_STATE_PRE_COPY || state === VFIO_DEVICE_STATE_PRE_COPY_P2P;
}

/**
 * Whether a device in `state` has a data transfer session. Every arc out of these states into
 * one that is not among them ends the session (PRE_COPY → RUNNING, STOP_COPY → STOP,
 * RESUMING → STOP).
 */
export function holdsSession(state: number): boolean {
  return isPrecopyState(state) || state === VFIO_DEVICE_STATE_STOP_COPY || state === VFIO_DEVICE_STATE_RESUMING;
}

/**
 * Whether a session open in `from` is still the one open after a change to `to`: only within
 * the saving states that share one stream (PRE_COPY ↔ PRE_COPY_P2P → STOP_COPY). Any other
 * change leaves the session's states on the way, which ends it, even when the walk then starts
 * a new session (STOP_COPY → STOP → RESUMING).
 */
export function sessionContinues(from: number, to: number): boolean {
  return from === to || (isPrecopyState(from) && (isPrecopyState(to) || to === VFIO_DEVICE_STATE_STOP_COPY));
}
