// VFIO migration v2 on one device (QEMU's VFIOMigration, hw/vfio/migration.c): the device state
// vmmkit put it in, state changes with recovery or reset, and the source and destination steps.
// The device is reached only through its I/O (`device.io`): ioctls and a data fd for the kernel,
// DEVICE_FEATURE and MIG_DATA_READ / MIG_DATA_WRITE messages for vfio-user.

import { HostError, ArgumentError, VfioError, type VfioDevice, type VfioMigDataSession, type VfioMigReadResult, type VfioPrecopyInfo, type VmmEventBus } from '@vmmkit/core';
import {
  VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, vfio_device_feature_mig_data_size, VFIO_DEVICE_STATE_ERROR as ERROR, VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY, VFIO_DEVICE_STATE_PRE_COPY_P2P as
  PRE_COPY_P2P, VFIO_DEVICE_STATE_RESUMING as RESUMING, VFIO_DEVICE_STATE_RUNNING   as RUNNING,
  VFIO_DEVICE_STATE_RUNNING_P2P as RUNNING_P2P, VFIO_DEVICE_STATE_STOP as STOP, VFIO_DEVICE_STATE_STOP_COPY as
  STOP_COPY, VFIO_MIGRATION_P2P, VFIO_MIGRATION_PRE_COPY, VFIO_MIGRATION_STOP_COPY,
} from '@vmmkit/core/uapi';
import type {} from '../events.js';
import { MigDataHolder } from './mig-data-holder.js';
import { isPrecopyState, migStateName, sessionContinues } from './mig-states.js';

/** QEMU's VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE: 1 MiB per read of the data fd. */
export const VFIO_MIG_DEFAULT_CHUNK_SIZE = 1 << 20;

/**
 * QEMU's VFIO_MIG_STOP_COPY_SIZE: what stop-copy is assumed to take when the device cannot say,
 * big enough that a downtime limit is never met by mistake.
 */
export const VFIO_MIG_STOP_COPY_SIZE = 100n << 30n;

/** What one read of the data gave: bytes, nothing for now (precopy drained), or end of stream. */
export type MigReadResult = VfioMigReadResult;
/** VFIO_MIG_GET_PRECOPY_INFO: what PRE_COPY still has to send. */
export type PrecopyInfo = VfioPrecopyInfo;

export interface VfioMigrationOptions {
  /** Bytes one read of the data asks for (capped by vfio-user's max_data_xfer_size). Default 1 MiB. */
  readonly chunkSize?: number;
}

/**
 * Migration v2 of one VFIO device. Every state change emits `'migration:device-state'`; every
 * failure throws a VfioError naming the device, the step, the ioctl (or message) and the errno.
 * The object owns at most one data transfer session (the kernel's data fd), from the arc that
 * starts it until it ends (the state leaves PRE_COPY/PRE_COPY_P2P/STOP_COPY/RESUMING), the
 * device is reset, or `cleanup()`. Steps run one at a time: the caller awaits each.
 */
export class VfioMigration {
  #state = RUNNING;
  readonly #data: MigDataHolder;

  /**
   * @param device an attached device whose `migrationFlags` were probed (VFIO_MIGRATION_STOP_COPY at least).
   * @throws VfioError (EOPNOTSUPP) when the device does not support migration v2.
   */
  constructor(
    readonly device: VfioDevice,
    private readonly events: VmmEventBus,
    options: VfioMigrationOptions = {},
  ) {
    const chunkSize = options.chunkSize ?? VFIO_MIG_DEFAULT_CHUNK_SIZE;
    if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) throw new ArgumentError(`chunkSize must be a positive integer, got ${chunkSize}`, 'chunkSize');
    // vfio_migration_init: without STOP_COPY there is no migration at all.
    if (!(device.migrationFlags & VFIO_MIGRATION_STOP_COPY)) {
      throw new VfioError('set up migration', device.name, { detail: 'the device does not support VFIO migration v2', errno: 'EOPNOTSUPP' });
    }
    this.#data = new MigDataHolder(device.name, chunkSize, (message) => this.#warn(message));
  }

  /** The VFIO_DEVICE_STATE_* vmmkit last put the device in (RUNNING at start; ERROR when even a reset failed). */
  get state(): number {
    return this.#state;
  }

  /** The data fd of the current data transfer session, or -1 (no session, or vfio-user's, which has none). */
  get dataFd(): number {
    return this.#data.fd;
  }

  /** Whether a data transfer session is held. */
  get hasSession(): boolean {
    return this.#data.held;
  }

  /** The device offers PRE_COPY (VFIO_MIGRATION_PRE_COPY). */
  get precopySupported(): boolean {
    return (this.device.migrationFlags & VFIO_MIGRATION_PRE_COPY) !== 0;
  }

  /** The device offers the P2P quiescent states (VFIO_MIGRATION_P2P). */
  get p2pSupported(): boolean {
    return (this.device.migrationFlags & VFIO_MIGRATION_P2P) !== 0;
  }

  /**
   * Move the device to `target` (QEMU's vfio_migration_set_state). When the kernel refuses, put
   * the device in `recover` instead; with `recover` ERROR, or when that fails too, reset the
   * device (it is RUNNING afterwards, its session ended). A session the change starts is taken;
   * one started while another is still held is closed and reported (EBADF, data_fd out of sync).
   * @throws VfioError for the failed change, saying where the device was left.
   */
  async setState(target: number, recover: number): Promise<void> {
    const from = this.#state;
    let session: VfioMigDataSession | undefined;
    try {
      session = await this.device.io.setMigState(target);
    } catch (e) {
      return this.#recover(target, recover, e);
    }
    this.#enter(from, target);
    this.#takeSession(from, target, session);
  }

  /** Move the device to `target`, resetting it if that fails (QEMU's vfio_migration_set_state_or_reset). */
  setStateOrReset(target: number): Promise<void> {
    return this.setState(target, ERROR);
  }

  // ---- source ----

  /** Start saving (vfio_save_setup): RUNNING → PRE_COPY when the device has PRE_COPY; else nothing. */
  async saveSetup(): Promise<void> {
    if (!this.precopySupported || this.#state === STOP) return; // a stopped VM goes straight to STOP_COPY
    if (this.#state !== RUNNING) throw this.#wrongState('start saving');
    await this.setState(PRE_COPY, RUNNING);
  }

  /** What PRE_COPY still has to send; zeros outside PRE_COPY/PRE_COPY_P2P, or when the transport cannot say. */
  async precopyInfo(): Promise<PrecopyInfo> {
    if (!isPrecopyState(this.#state)) return { initialBytes: 0n, dirtyBytes: 0n };
    return this.#data.precopyInfo();
  }

  /**
   * The device's estimate of the stop-copy data (MIG_DATA_SIZE). When the device cannot say,
   * VFIO_MIG_STOP_COPY_SIZE, with a 'vfio:warning', so that a downtime limit is not trusted.
   */
  async stopCopySize(): Promise<bigint> {
    try {
      const out = await this.device.io.feature(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, vfio_device_feature_mig_data_size.encode());
      return vfio_device_feature_mig_data_size.get(out, 'stop_copy_length');
    } catch (e) {
      if (!(e instanceof VfioError) || e.errno === undefined) throw e;
      this.#warn(`failed to query the stop-copy size (${e.ioctl ?? 'DEVICE_FEATURE MIG_DATA_SIZE'} -> ${e.errno}); assuming ${VFIO_MIG_STOP_COPY_SIZE} bytes`);
      return VFIO_MIG_STOP_COPY_SIZE;
    }
  }

  /**
   * One read of the device's data. The bytes are a view of a reused buffer, valid until the next
   * call. 'empty': PRE_COPY has nothing more for now; 'end': the stream is complete.
   */
  readChunk(): Promise<MigReadResult> {
    return this.#data.read();
  }

  /**
   * Before the VM stops, P2P devices quiesce first (vfio_vmstate_change_prepare): PRE_COPY →
   * PRE_COPY_P2P, RUNNING → RUNNING_P2P, resetting on failure. Nothing for devices without P2P.
   */
  async prepareSwitchover(): Promise<void> {
    if (!this.p2pSupported || this.#state === PRE_COPY_P2P || this.#state === RUNNING_P2P) return;
    if (this.#state !== PRE_COPY && this.#state !== RUNNING) throw this.#wrongState('quiesce peer-to-peer DMA');
    await this.setStateOrReset(this.#state === PRE_COPY ? PRE_COPY_P2P : RUNNING_P2P);
  }

  /**
   * Stop the device and stream its final state (vfio_save_complete_precopy): → STOP_COPY, back
   * to STOP on failure. A precopy session continues; otherwise the arc opens one.
   */
  switchover(): Promise<void> {
    return this.setState(STOP_COPY, STOP);
  }

  /** The migration failed or was cancelled on the source: the device runs again, its session closed. */
  async resumeRunning(): Promise<void> {
    try {
      if (this.#state !== RUNNING) await this.setStateOrReset(RUNNING);
    } finally {
      this.#data.close();
    }
  }

  // ---- destination ----

  /** Prepare to receive (vfio_load_setup): → RESUMING, resetting on failure; takes the session. */
  loadSetup(): Promise<void> {
    return this.setStateOrReset(RESUMING);
  }

  /** Write all of `bytes` of the stream to the device. @throws VfioError, e.g. when the device refuses the stream. */
  writeChunk(bytes: Uint8Array): Promise<void> {
    return this.#data.write(bytes);
  }

  /**
   * Load what was written (RESUMING → STOP): the kernel checks and loads the state here. When it
   * does not load, the device is reset and the VfioError says so. The device stays stopped
   * until `start()`. Nothing to do outside RESUMING.
   */
  async finishLoad(): Promise<void> {
    if (this.#state !== RESUMING) return;
    try {
      await this.setStateOrReset(STOP);
    } catch (e) {
      throw new VfioError('load the device state', this.device.name, { cause: e, detail: 'the device state did not load' });
    }
  }

  /**
   * The migration failed on the destination: reset the device at once (leaving RESUMING by a
   * state change would load a partial state) so that it is RUNNING, clean, with no session.
   * @throws VfioError when even the reset fails (the device is left in ERROR).
   */
  async abortLoad(): Promise<void> {
    const outcome = await this.#reset();
    if (this.#state === ERROR) throw new VfioError('abort loading the device state', this.device.name, { detail: outcome });
  }

  /**
   * The source side succeeded (vfio_save_cleanup): a device left in STOP_COPY goes to STOP, which
   * ends the session and closes the data fd. The device stays stopped.
   */
  async saveCleanup(): Promise<void> {
    try {
      if (this.#state === STOP_COPY) await this.setStateOrReset(STOP);
    } finally {
      this.#data.close();
    }
  }

  /**
   * Run the device (vfio_vmstate_change on VM start): RESUMING or STOP → RUNNING_P2P (P2P
   * devices) → RUNNING, resetting on failure. Leaving RESUMING is where the kernel loads the state: when
   * it does not load, the device is reset and the VfioError says the state did not load.
   */
  async start(): Promise<void> {
    for (const hop of this.p2pSupported ? [RUNNING_P2P, RUNNING] : [RUNNING]) {
      const loading = this.#state === RESUMING;
      try {
        await this.setStateOrReset(hop);
      } catch (e) {
        if (!loading) throw e;
        throw new VfioError('start the device', this.device.name, { cause: e, detail: 'the device state did not load' });
      }
    }
  }

  /** Close the data transfer session, if any (QEMU's vfio_migration_cleanup). Idempotent. */
  cleanup(): void {
    this.#data.close();
  }

  // ---- internals ----

  /** The state changed: record it and say so. */
  #enter(from: number, to: number): void {
    this.#state = to;
    if (from !== to) this.events.emit('migration:device-state', { device: this.device.name, from: migStateName(from), to: migStateName(to) });
  }

  #takeSession(from: number, to: number, session: VfioMigDataSession | undefined): void {
    // The device ended the session: it can only fail from now on.
    if (!sessionContinues(from, to)) this.#data.close();
    if (session) this.#data.adopt(session);
  }

  /** The change to `target` failed with `cause`: reach `recover` or reset, then throw. */
  async #recover(target: number, recover: number, cause: unknown): Promise<never> {
    let outcome: string;
    if (recover === ERROR) outcome = await this.#reset();
    else {
      const failed = await this.#tryState(recover);
      outcome = failed === undefined
        ? `the device was put back in ${migStateName(recover)}`
        : `putting it back in ${migStateName(recover)} failed too (${describe(failed)}); ${await this.#reset()}`;
    }
    const error = new VfioError(`set the migration state to ${migStateName(target)}`, this.device.name, { cause, detail: outcome });
    this.#warn(error.message);
    throw error;
  }

  /** Try to move to `state` on the way out of a failure; returns the failure, if any. */
  async #tryState(state: number): Promise<unknown> {
    const from = this.#state;
    let session: VfioMigDataSession | undefined;
    try {
      session = await this.device.io.setMigState(state);
    } catch (e) {
      return e;
    }
    this.#enter(from, state);
    try {
      this.#takeSession(from, state, session);
    } catch {
      // Out of sync: the new session is closed already, and the original failure is the one to report.
    }
    return undefined;
  }

  /** VFIO_DEVICE_RESET (the device ends every session, so the held one goes too); says how it went. */
  async #reset(): Promise<string> {
    const from = this.#state;
    this.#data.close();
    try {
      await this.device.io.reset();
    } catch (e) {
      // QEMU gives up here (hw_error); vmmkit reports it and remembers the device needs a reset.
      this.#enter(from, ERROR);
      return `resetting the device failed too (${describe(e)}): it is unusable until reset`;
    }
    this.#enter(from, RUNNING);
    return 'the device was reset to RUNNING';
  }

  #wrongState(step: string): VfioError {
    return new VfioError(step, this.device.name, { detail: `the device is in ${migStateName(this.#state)}`, errno: 'EINVAL' });
  }

  #warn(message: string): void {
    this.events.emit('vfio:warning', { device: this.device.name, message });
  }
}

function describe(e: unknown): string {
  if (e instanceof HostError) return `${e.ioctl ?? e.syscall} -> ${e.errno}`;
  if (e instanceof VfioError && e.errno !== undefined) return `${e.ioctl ?? e.step} -> ${e.errno}`;
  return e instanceof Error ? e.message : String(e);
}
