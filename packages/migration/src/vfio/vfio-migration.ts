// VFIO migration v2 on one device (QEMU's VFIOMigration, hw/vfio/migration.c): the device state
// vmmkit put it in, state changes with recovery or reset, and the source and destination steps.

import {
  HostError, ArgumentError, VfioError, type HostKernel, type VfioDevice, type   VmmEventBus,
} from '@vmmkit/core';
import {
  VFIO_DEVICE_STATE_ERROR as ERROR, VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY, VFIO_DEVICE_STATE_PRE_COPY_P2P as
  PRE_COPY_P2P, VFIO_DEVICE_STATE_RESUMING as RESUMING, VFIO_DEVICE_STATE_RUNNING   as RUNNING,
  VFIO_DEVICE_STATE_RUNNING_P2P as RUNNING_P2P, VFIO_DEVICE_STATE_STOP as STOP, VFIO_DEVICE_STATE_STOP_COPY as
  STOP_COPY, VFIO_MIGRATION_P2P, VFIO_MIGRATION_PRE_COPY, VFIO_MIGRATION_STOP_COPY,
} from '@vmmkit/core/uapi';
import type {} from '../events.js';
import { MigDataFd, type MigReadResult, type PrecopyInfo } from './mig-data-fd.js';
import { queryStopCopySize, resetDevice, setMigDeviceState } from './mig-device-ioctls.js';
import { isPrecopyState, migStateName, sessionContinues } from './mig-states.js';

/** QEMU's VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE: 1 MiB per read of the data fd. */
export const VFIO_MIG_DEFAULT_CHUNK_SIZE = 1 << 20;

/**
 * QEMU's VFIO_MIG_STOP_COPY_SIZE: what stop-copy is assumed to take when the device cannot say,
 * big enough that a downtime limit is never met by mistake.
 */
export const VFIO_MIG_STOP_COPY_SIZE = 100n << 30n;

export interface VfioMigrationOptions {
  /** Bytes one read of the data fd asks for. Default 1 MiB. */
  readonly chunkSize?: number;
}

/**
 * Migration v2 of one VFIO device. Every state change emits `'migration:device-state'`; every
 * failure throws a VfioError naming the device, the step, the ioctl and the errno. The object
 * owns at most one data fd, from the arc that starts a session until the session ends (the
 * state leaves PRE_COPY/PRE_COPY_P2P/STOP_COPY/RESUMING), the device is reset, or `cleanup()`.
 */
export class VfioMigration {
  #state = RUNNING;
  readonly #data: MigDataFd;

  /**
   * @param device an attached device whose `migrationFlags` were probed (VFIO_MIGRATION_STOP_COPY at least).
   * @throws VfioError (EOPNOTSUPP) when the device does not support migration v2.
   */
  constructor(
    private readonly host: HostKernel,
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
    this.#data = new MigDataFd(host, device.name, chunkSize, (message) => this.#warn(message));
  }

  /** The VFIO_DEVICE_STATE_* vmmkit last put the device in (RUNNING at start; ERROR when even a reset failed). */
  get state(): number {
    return this.#state;
  }

  /** The data fd of the current data transfer session, or -1. */
  get dataFd(): number {
    return this.#data.fd;
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
   * device (it is RUNNING afterwards, its session ended). A data fd the kernel returns is taken;
   * one returned while another is still held is closed and reported (EBADF, data_fd out of sync).
   * @throws VfioError for the failed change, saying where the device was left.
   */
  setState(target: number, recover: number): void {
    const from = this.#state;
    let dataFd: number;
    try {
      dataFd = setMigDeviceState(this.host, this.device.fd, target);
    } catch (e) {
      this.#recover(target, recover, e);
    }
    this.#enter(from, target);
    this.#takeDataFd(from, target, dataFd);
  }

  /** Move the device to `target`, resetting it if that fails (QEMU's vfio_migration_set_state_or_reset). */
  setStateOrReset(target: number): void {
    this.setState(target, ERROR);
  }

  // ---- source ----

  /** Start saving (vfio_save_setup): RUNNING → PRE_COPY when the device has PRE_COPY; else nothing. */
  saveSetup(): void {
    if (!this.precopySupported || this.#state === STOP) return; // a stopped VM goes straight to STOP_COPY
    if (this.#state !== RUNNING) throw this.#wrongState('start saving');
    this.setState(PRE_COPY, RUNNING);
  }

  /** What PRE_COPY still has to send; zeros outside PRE_COPY/PRE_COPY_P2P. */
  precopyInfo(): PrecopyInfo {
    if (!isPrecopyState(this.#state)) return { initialBytes: 0n, dirtyBytes: 0n };
    return this.#data.precopyInfo();
  }

  /**
   * The kernel's estimate of the stop-copy data (MIG_DATA_SIZE). When the device cannot say,
   * VFIO_MIG_STOP_COPY_SIZE, with a 'vfio:warning', so that a downtime limit is not trusted.
   */
  stopCopySize(): bigint {
    try {
      return queryStopCopySize(this.host, this.device.fd);
    } catch (e) {
      if (!(e instanceof HostError)) throw e;
      this.#warn(`failed to query the stop-copy size (${e.ioctl ?? e.syscall} -> ${e.errno}); assuming ${VFIO_MIG_STOP_COPY_SIZE} bytes`);
      return VFIO_MIG_STOP_COPY_SIZE;
    }
  }

  /**
   * One read of the data fd. The bytes are a view of a reused buffer, valid until the next call.
   * 'empty': PRE_COPY has nothing more for now (ENOMSG); 'end': the stream is complete.
   */
  readChunk(): MigReadResult {
    return this.#data.read();
  }

  /**
   * Before the VM stops, P2P devices quiesce first (vfio_vmstate_change_prepare): PRE_COPY →
   * PRE_COPY_P2P, RUNNING → RUNNING_P2P, resetting on failure. Nothing for devices without P2P.
   */
  prepareSwitchover(): void {
    if (!this.p2pSupported || this.#state === PRE_COPY_P2P || this.#state === RUNNING_P2P) return;
    if (this.#state !== PRE_COPY && this.#state !== RUNNING) throw this.#wrongState('quiesce peer-to-peer DMA');
    this.setStateOrReset(this.#state === PRE_COPY ? PRE_COPY_P2P : RUNNING_P2P);
  }

  /**
   * Stop the device and stream its final state (vfio_save_complete_precopy): → STOP_COPY, back
   * to STOP on failure. A precopy session's data fd continues; otherwise the arc opens one.
   */
  switchover(): void {
    this.setState(STOP_COPY, STOP);
  }

  /** The migration failed or was cancelled on the source: the device runs again, its data fd closed. */
  resumeRunning(): void {
    try {
      if (this.#state !== RUNNING) this.setStateOrReset(RUNNING);
    } finally {
      this.#data.close();
    }
  }

  // ---- destination ----

  /** Prepare to receive (vfio_load_setup): → RESUMING, resetting on failure; takes the data fd. */
  loadSetup(): void {
    this.setStateOrReset(RESUMING);
  }

  /** Write all of `bytes` of the stream to the data fd. @throws VfioError, e.g. when the device refuses the stream. */
  writeChunk(bytes: Uint8Array): void {
    this.#data.write(bytes);
  }

  /**
   * Load what was written (RESUMING → STOP): the kernel checks and loads the state here. When it
   * does not load, the device is reset and the VfioError says so. The device stays stopped
   * until `start()`. Nothing to do outside RESUMING.
   */
  finishLoad(): void {
    if (this.#state !== RESUMING) return;
    try {
      this.setStateOrReset(STOP);
    } catch (e) {
      throw new VfioError('load the device state', this.device.name, { cause: e, detail: 'the device state did not load' });
    }
  }

  /**
   * The migration failed on the destination: reset the device at once (leaving RESUMING by a
   * state change would load a partial state) so that it is RUNNING, clean, with no session.
   * @throws VfioError when even the reset fails (the device is left in ERROR).
   */
  abortLoad(): void {
    const outcome = this.#reset();
    if (this.#state === ERROR) throw new VfioError('abort loading the device state', this.device.name, { detail: outcome });
  }

  /**
   * The source side succeeded (vfio_save_cleanup): a device left in STOP_COPY goes to STOP, which
   * ends the session and closes the data fd. The device stays stopped.
   */
  saveCleanup(): void {
    try {
      if (this.#state === STOP_COPY) this.setStateOrReset(STOP);
    } finally {
      this.#data.close();
    }
  }

  /**
   * Run the device (vfio_vmstate_change on VM start): RESUMING or STOP → RUNNING_P2P (P2P
   * devices) → RUNNING, resetting on failure. Leaving RESUMING is where the kernel loads the state: when
   * it does not load, the device is reset and the VfioError says the state did not load.
   */
  start(): void {
    for (const hop of this.p2pSupported ? [RUNNING_P2P, RUNNING] : [RUNNING]) {
      const loading = this.#state === RESUMING;
      try {
        this.setStateOrReset(hop);
      } catch (e) {
        if (!loading) throw e;
        throw new VfioError('start the device', this.device.name, { cause: e, detail: 'the device state did not load' });
      }
    }
  }

  /** Close the data fd, if any (QEMU's vfio_migration_cleanup). Idempotent. */
  cleanup(): void {
    this.#data.close();
  }

  // ---- internals ----

  /** The state changed: record it and say so. */
  #enter(from: number, to: number): void {
    this.#state = to;
    if (from !== to) this.events.emit('migration:device-state', { device: this.device.name, from: migStateName(from), to: migStateName(to) });
  }

  #takeDataFd(from: number, to: number, dataFd: number): void {
    // The kernel ended the session: its fd can only fail from now on.
    if (!sessionContinues(from, to)) this.#data.close();
    if (dataFd !== -1) this.#data.adopt(dataFd);
  }

  /** The change to `target` failed with `cause`: reach `recover` or reset, then throw. */
  #recover(target: number, recover: number, cause: unknown): never {
    let outcome: string;
    if (recover === ERROR) outcome = this.#reset();
    else {
      const failed = this.#tryState(recover);
      outcome = failed === undefined
        ? `the device was put back in ${migStateName(recover)}`
        : `putting it back in ${migStateName(recover)} failed too (${describe(failed)}); ${this.#reset()}`;
    }
    const error = new VfioError(`set the migration state to ${migStateName(target)}`, this.device.name, { cause, detail: outcome });
    this.#warn(error.message);
    throw error;
  }

  /** Try to move to `state` on the way out of a failure; returns the failure, if any. */
  #tryState(state: number): unknown {
    const from = this.#state;
    let dataFd: number;
    try {
      dataFd = setMigDeviceState(this.host, this.device.fd, state);
    } catch (e) {
      return e;
    }
    this.#enter(from, state);
    try {
      this.#takeDataFd(from, state, dataFd);
    } catch {
      // Out of sync: the new fd is closed already, and the original failure is the one to report.
    }
    return undefined;
  }

  /** VFIO_DEVICE_RESET (the kernel ends every session, so the data fd goes too); says how it went. */
  #reset(): string {
    const from = this.#state;
    this.#data.close();
    try {
      resetDevice(this.host, this.device.fd);
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
  return e instanceof Error ? e.message : String(e);
}
