// The migration data fd of VFIO migration v2 (kind 'vfio-mig-data'): a read-only stream of
// device state while saving (PRE_COPY, STOP_COPY), write-only while resuming, with
// VFIO_MIG_GET_PRECOPY_INFO; modelled on the mlx5 and pds drivers' migration files.

import {
  VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_PRE_COPY_P2P, VFIO_MIG_GET_PRECOPY_INFO, vfio_precopy_info,
} from '@vmmkit/core/uapi';
import type { SimMigratableState } from '../devices/pci-model.js';
import type { Census } from '../kernel/census.js';
import { fail } from '../kernel/sim-errno.js';
import { SimFile, type IoctlArg } from '../kernel/sim-file.js';
import { UserArg } from '../kernel/user-arg.js';
import type { UserMemory } from '../memory/user-memory.js';
import {
  MIG_RECORD_DIRTY, MIG_RECORD_FINAL, MIG_RECORD_HEADER, MIG_RECORD_INITIAL, ResumeAssembler, SaveQueue, encodeRecord,
} from './mig-stream.js';

/** What a data fd needs from the device's migration driver. */
export interface MigDataOwner {
  readonly state: number;
  readonly kind: string;
  readonly migration: SimMigratableState;
  readonly memory: UserMemory | undefined;
  readonly census: Census;
}

/** A migration data fd. Disabled (ENODEV) once the session it belongs to has ended. */
export class VfioMigDataFile extends SimFile {
  readonly kind = 'vfio-mig-data' as const;
  readonly #save: SaveQueue | undefined;
  readonly #resume: ResumeAssembler | undefined;
  #disabled = false;
  #corrupt = false;
  #initialLeft = 0;
  #final = false;
  #snapVersion = 0;

  constructor(
    private readonly owner: MigDataOwner,
    readonly direction: 'save' | 'resume',
    final: boolean,
  ) {
    super();
    if (direction === 'resume') this.#resume = new ResumeAssembler(owner.kind);
    else {
      this.#save = new SaveQueue();
      this.#final = final;
      this.#initialLeft = this.#snapshot(final ? MIG_RECORD_FINAL : MIG_RECORD_INITIAL);
    }
    owner.census.add('data_fd');
  }

  /** The session ended (the state moved on, the device was reset or closed). */
  disable(): void {
    this.#disabled = true;
  }

  get disabled(): boolean {
    return this.#disabled;
  }

  /** PRE_COPY_P2P → STOP_COPY: the device stopped; its final state ends the stream. */
  finish(): void {
    this.#final = true;
    this.#snapshot(MIG_RECORD_FINAL);
  }

  /** Resuming: the newest complete state written (EINVAL if the stream is incomplete). */
  received(): Uint8Array {
    if (this.#corrupt) fail('EINVAL', 'the migration stream written was corrupt');
    return this.#resume!.finish();
  }

  override read(buf: Uint8Array): number {
    if (!this.#save) fail('EBADF', 'a resuming data fd is write-only');
    if (this.#disabled) fail('ENODEV', 'the migration session of this data fd has ended');
    if (buf.byteLength === 0) return 0;
    if (this.#save.length === 0 && !this.#final && this.owner.migration.version !== this.#snapVersion) {
      this.#snapshot(MIG_RECORD_DIRTY);
    }
    if (this.#save.length === 0) {
      if (this.#final) return 0;
      fail('ENOMSG', 'no precopy data until the device state changes');
    }
    const n = this.#save.take(buf);
    this.#initialLeft = Math.max(0, this.#initialLeft - n);
    return n;
  }

  override write(buf: Uint8Array): number {
    if (!this.#resume) fail('EBADF', 'a saving data fd is read-only');
    if (this.#disabled) fail('ENODEV', 'the migration session of this data fd has ended');
    try {
      this.#resume.write(buf);
    } catch (e) {
      this.#disabled = this.#corrupt = true; // a corrupt stream cannot be continued
      throw e;
    }
    return buf.byteLength;
  }

  override ioctl(request: number, arg: IoctlArg): number {
    if (request !== VFIO_MIG_GET_PRECOPY_INFO || !this.#save || !this.owner.memory) return fail('ENOTTY');
    const user = UserArg.of(arg, this.owner.memory);
    const minsz = vfio_precopy_info.size;
    const info = vfio_precopy_info.decode(user.read(0, minsz));
    if (info.argsz < minsz) fail('EINVAL', `argsz ${info.argsz} < ${minsz}`);
    const state = this.owner.state;
    if (state !== VFIO_DEVICE_STATE_PRE_COPY && state !== VFIO_DEVICE_STATE_PRE_COPY_P2P) {
      fail('EINVAL', 'VFIO_MIG_GET_PRECOPY_INFO is only valid in PRE_COPY and PRE_COPY_P2P');
    }
    if (this.#disabled) fail('ENODEV', 'the migration session of this data fd has ended');
    const queued = this.#save.length;
    const changed = this.owner.migration.version !== this.#snapVersion;
    const dirty = queued - this.#initialLeft + (changed ? MIG_RECORD_HEADER + this.owner.migration.save().byteLength : 0);
    user.write(0, vfio_precopy_info.encode({
      argsz: info.argsz, flags: info.flags, initial_bytes: BigInt(this.#initialLeft), dirty_bytes: BigInt(dirty),
    }));
    return 0;
  }

  protected override release(): void {
    this.owner.census.remove('data_fd');
  }

  /** Queue a record of the device's current state; returns its length. */
  #snapshot(flags: number): number {
    this.#snapVersion = this.owner.migration.version;
    const record = encodeRecord(this.owner.kind, flags, this.owner.migration.save());
    this.#save!.push(record);
    return record.byteLength;
  }
}
