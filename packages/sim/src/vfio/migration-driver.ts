// A VFIO migration v2 driver for simulated devices, in the shape of mlx5's and pds's: the
// device state, the arcs of the state machine stepped one at a time (vfio_mig_get_next_state),
// the data fds of the saving and resuming sessions, and reset handling.

import { InvariantError } from '@vmmkit/core';
import {
  VFIO_DEVICE_STATE_ERROR as ERROR, VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY, VFIO_DEVICE_STATE_PRE_COPY_P2P as
  PRE_COPY_P2P, VFIO_DEVICE_STATE_RESUMING as RESUMING, VFIO_DEVICE_STATE_RUNNING as RUNNING,
  VFIO_DEVICE_STATE_RUNNING_P2P as RUNNING_P2P, VFIO_DEVICE_STATE_STOP as STOP, VFIO_DEVICE_STATE_STOP_COPY as
  STOP_COPY,
} from '@vmmkit/core/uapi';
import type { SimMigratableState, SimMigrationDriver } from '../devices/pci-model.js';
import type { Census } from '../kernel/census.js';
import { SimErrno } from '../kernel/sim-errno.js';
import type { UserMemory } from '../memory/user-memory.js';
import { MIG_STATE_NAMES, migNextState } from './mig-fsm.js';
import { VfioMigDataFile, type MigDataOwner } from './mig-data-file.js';
import { MIG_RECORD_HEADER } from './mig-stream.js';

const key = (from: number, to: number): number => from * 8 + to;

/** What the generic migration driver works on: the simulated kernel's device, or a vfio-user server's. */
export interface VfioMigrationContext {
  /** VFIO_MIGRATION_* flags the device offers. */
  readonly flags: number;
  /** The model's kind, written into and checked against every migration record. */
  readonly kind: string;
  readonly migration: SimMigratableState;
  /** The caller's address space, for VFIO_MIG_GET_PRECOPY_INFO (absent: that ioctl is ENOTTY). */
  readonly memory?: UserMemory;
  readonly census: Census;
  /** A failed load leaves the device RESUMING instead of ERROR. */
  readonly keepResuming?: boolean;
}

/** The device's migration state and its data transfer sessions. */
export class VfioMigration implements MigDataOwner, SimMigrationDriver {
  state = RUNNING;
  readonly flags: number;
  readonly kind: string;
  readonly migration: SimMigratableState;
  readonly memory: UserMemory | undefined;
  readonly census: Census;
  /** The file of the saving session (PRE_COPY, PRE_COPY_P2P, STOP_COPY) or of RESUMING. */
  #session: VfioMigDataFile | undefined;
  readonly #arcs: ReadonlyMap<number, () => VfioMigDataFile | undefined>;
  /** A failed load leaves the device RESUMING (SimDeviceConfig.migration.resumeFailure). */
  readonly #keepResuming: boolean;

  constructor(context: VfioMigrationContext) {
    this.flags = context.flags;
    this.kind = context.kind;
    this.migration = context.migration;
    this.memory = context.memory;
    this.census = context.census;
    this.#keepResuming = context.keepResuming ?? false;
    const run = (running: boolean) => () => {
      this.migration.setRunning(running);
      return undefined;
    };
    const none = () => undefined;
    const save = (final: boolean) => () => this.#startSession('save', final);
    const end = () => {
      this.#endSession();
      return undefined;
    };
    this.#arcs = new Map<number, () => VfioMigDataFile | undefined>([
      [key(RUNNING_P2P, STOP), run(false)], [key(RUNNING, STOP), run(false)],
      [key(STOP, RUNNING_P2P), run(true)], [key(STOP, RUNNING), run(true)],
      [key(RUNNING, RUNNING_P2P), none], [key(RUNNING_P2P, RUNNING), none],
      [key(PRE_COPY, PRE_COPY_P2P), none], [key(PRE_COPY_P2P, PRE_COPY), none],
      [key(STOP, STOP_COPY), save(true)], [key(RUNNING, PRE_COPY), save(false)], [key(RUNNING_P2P, PRE_COPY_P2P), save(false)],
      [key(STOP_COPY, STOP), end], [key(PRE_COPY, RUNNING), end], [key(PRE_COPY_P2P, RUNNING_P2P), end],
      [key(PRE_COPY_P2P, STOP_COPY), () => this.#stopCopy()], [key(PRE_COPY, STOP_COPY), () => this.#stopCopy()],
      [key(STOP, RESUMING), () => this.#startSession('resume', false)],
      [key(RESUMING, STOP), () => this.#resumed()],
    ]);
  }

  /**
   * VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE SET: walk the arcs to `target`. Returns the new data fd
   * when the last arc starts a session. A failed arc leaves the device in the last state reached,
   * except a device state that fails to load, which leaves the device in ERROR.
   */
  setState(target: number): VfioMigDataFile | undefined {
    let file: VfioMigDataFile | undefined;
    while (this.state !== target) {
      const next = migNextState(this.flags, this.state, target);
      const arc = this.#arcs.get(key(this.state, next));
      if (!arc) throw new InvariantError(`sim: no arc ${MIG_STATE_NAMES[this.state]} -> ${MIG_STATE_NAMES[next]}`);
      file = arc();
      this.state = next;
    }
    return file;
  }

  /** VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: the bytes STOP_COPY would stream now. */
  dataSize(): bigint {
    return BigInt(MIG_RECORD_HEADER + this.migration.save().byteLength);
  }

  /** open_device: a freshly opened device is RUNNING. */
  open(): void {
    this.state = RUNNING;
    this.migration.setRunning(true);
  }

  /** close_device: end any session (its fd stays open but dead). */
  close(): void {
    this.resetDone();
  }

  /** reset_done: a reset returns the device to RUNNING and ends any session. */
  resetDone(): void {
    this.#endSession();
    this.state = RUNNING;
    this.migration.setRunning(true);
  }

  #startSession(direction: 'save' | 'resume', final: boolean): VfioMigDataFile {
    // The driver keeps its own reference for the session's lifetime, as mlx5 does (get_file),
    // so closing the user's fd early does not end the session.
    const file = new VfioMigDataFile(this, direction, final).ref();
    this.#session = file;
    return file;
  }

  #endSession(): void {
    this.#session?.disable();
    this.#session?.unref();
    this.#session = undefined;
  }

  #stopCopy(): undefined {
    this.migration.setRunning(false);
    this.#session?.finish();
    return undefined;
  }

  /**
   * RESUMING → STOP: load what was written. A stream that does not load leaves the device in
   * ERROR, or (resumeFailure 'resuming') still RESUMING with its session, ready for more data.
   */
  #resumed(): undefined {
    const session = this.#session!;
    try {
      this.migration.load(session.received());
    } catch (e) {
      if (!(e instanceof SimErrno) || this.#keepResuming) throw e;
      this.state = ERROR;
      this.migration.setRunning(false);
      this.#endSession();
      throw e;
    }
    this.#endSession();
    return undefined;
  }
}
