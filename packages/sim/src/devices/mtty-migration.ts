// The migration driver of the mtty model, mirroring samples/vfio-mdev/mtty.c: its arcs
// (mtty_step_state), its stream (a 24-byte header, then the port's struct serial_port), and
// its data files' quirks, which real userspace meets on Linux and so should meet here:
// - at the temporary end of PRE_COPY a read returns 0, not ENOMSG as the uAPI asks;
// - PRE_COPY carries only the header, and dirty_bytes is always 0;
// - a header that does not validate fails that write with EFAULT (the bytes are kept anyway);
//   writing past the stream's size is ENOMEM;
// - a stream too short to load fails RESUMING → STOP with EINVAL, leaving the device RESUMING.

import {
  VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY, VFIO_DEVICE_STATE_PRE_COPY_P2P as PRE_COPY_P2P, VFIO_DEVICE_STATE_RESUMING
  as RESUMING, VFIO_DEVICE_STATE_RUNNING as RUNNING, VFIO_DEVICE_STATE_RUNNING_P2P as RUNNING_P2P,
  VFIO_DEVICE_STATE_STOP as STOP, VFIO_DEVICE_STATE_STOP_COPY as STOP_COPY, VFIO_MIG_GET_PRECOPY_INFO,
  vfio_precopy_info,
} from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import { SimFile, type IoctlArg } from '../kernel/sim-file.js';
import { UserArg } from '../kernel/user-arg.js';
import { migNextState } from '../vfio/mig-fsm.js';
import type { MttyModel } from './mtty.js';
import { MTTY_PORT_STATE_SIZE } from './mtty-serial.js';
import type { SimMigrationContext, SimMigrationDriver } from './pci-model.js';

/** offsetof(struct mtty_data, ports): magic (u64), major, minor, nr_ports, flags (u32 each). */
export const MTTY_HEADER_SIZE = 24;
const MTTY_MAGIC = 0x7e9d_0989_8c3e_2c4en;
const MTTY_MAJOR_VER = 1;
const MTTY_MINOR_VER = 0;
/** The model is mtty's single-port type. */
const MTTY_PORTS = 1;

const arc = (from: number, to: number): number => from * 8 + to;
// Arcs that do nothing: mtty neither DMAs nor needs an explicit start or stop.
const NOOP_ARCS = new Set([
  arc(RUNNING, RUNNING_P2P), arc(RUNNING_P2P, RUNNING), arc(RUNNING_P2P, STOP),
  arc(PRE_COPY, PRE_COPY_P2P), arc(PRE_COPY_P2P, PRE_COPY), arc(STOP, RUNNING_P2P),
]);
// Arcs that end the session.
const CLOSING_ARCS = new Set([arc(PRE_COPY, RUNNING), arc(PRE_COPY_P2P, RUNNING_P2P), arc(STOP_COPY, STOP)]);
// Arcs that save: they start a session, or (into STOP_COPY) add the port to the one PRE_COPY started.
const SAVING_ARCS = new Set([arc(RUNNING, PRE_COPY), arc(RUNNING_P2P, PRE_COPY_P2P), arc(STOP, STOP_COPY), arc(PRE_COPY_P2P, STOP_COPY)]);

/** mtty's migration state and its saving and resuming files. */
export class MttyMigration implements SimMigrationDriver {
  state = RUNNING;
  readonly flags: number;
  #saving: MttyMigFile | undefined;
  #resuming: MttyMigFile | undefined;

  constructor(
    readonly context: SimMigrationContext,
    private readonly device: MttyModel,
  ) {
    this.flags = context.flags;
  }

  /** The bytes of a full stream (mtty_data_size): what MIG_DATA_SIZE reports and RESUMING accepts. */
  get streamSize(): number {
    return MTTY_HEADER_SIZE + MTTY_PORTS * MTTY_PORT_STATE_SIZE;
  }

  /** mtty_set_state: step arc by arc; a refused step leaves the state where the walk got to. */
  setState(target: number): SimFile | undefined {
    let file: SimFile | undefined;
    while (this.state !== target) {
      const next = migNextState(this.flags, this.state, target);
      file = this.#step(next);
      this.state = next;
    }
    return file;
  }

  dataSize(): bigint {
    return BigInt(this.streamSize);
  }

  /** mtty has no open_device: the state is what it was when the device was last closed. */
  open(): void {}

  /** mtty_close: the files are disabled; the migration state is left as it is. */
  close(): void {
    this.#disableFiles();
  }

  /** mtty_reset (its deferred reset): RUNNING, with the files disabled. */
  resetDone(): void {
    this.state = RUNNING;
    this.#disableFiles();
  }

  /** The precopy ioctl's view of the state. */
  get precopying(): boolean {
    return this.state === PRE_COPY || this.state === PRE_COPY_P2P;
  }

  /** mtty_step_state. */
  #step(next: number): SimFile | undefined {
    const a = arc(this.state, next);
    if (NOOP_ARCS.has(a)) return undefined;
    if (CLOSING_ARCS.has(a)) return void this.#disableFiles();
    if (a === arc(RESUMING, STOP)) return void this.#load();
    if (SAVING_ARCS.has(a)) return this.#save(next);
    if (a === arc(STOP, RESUMING)) return (this.#resuming = new MttyMigFile(this, 'resume')).ref();
    return fail('EINVAL', `mtty has no arc ${this.state} -> ${next}`);
  }

  /** mtty_save_device_data: a new session gets the header; STOP_COPY adds the port to it. */
  #save(next: number): SimFile | undefined {
    let started: MttyMigFile | undefined;
    if (!this.#saving) {
      started = this.#saving = new MttyMigFile(this, 'save').ref();
      started.append(this.#header());
    }
    if (next === STOP_COPY) this.#saving.append(this.device.save());
    return started;
  }

  /** mtty_load_state: EINVAL until the whole stream was written; the state stays RESUMING. */
  #load(): void {
    const file = this.#resuming!;
    if (file.filled < this.streamSize) fail('EINVAL', `mtty expected ${this.streamSize} bytes of migration data, got ${file.filled}`);
    this.device.load(file.bytes.subarray(MTTY_HEADER_SIZE, this.streamSize));
    this.#disableFiles();
  }

  #header(): Uint8Array {
    const out = new Uint8Array(MTTY_HEADER_SIZE);
    const dv = new DataView(out.buffer);
    dv.setBigUint64(0, MTTY_MAGIC, true);
    dv.setUint32(8, MTTY_MAJOR_VER, true);
    dv.setUint32(12, MTTY_MINOR_VER, true);
    dv.setUint32(16, MTTY_PORTS, true);
    return out;
  }

  /** Whether a written header is one mtty would load (mtty_resume_write's validation). */
  headerValid(bytes: Uint8Array): boolean {
    const dv = new DataView(bytes.buffer, bytes.byteOffset);
    return dv.getBigUint64(0, true) === MTTY_MAGIC && dv.getUint32(20, true) === 0 && dv.getUint32(8, true) === MTTY_MAJOR_VER &&
      dv.getUint32(12, true) === MTTY_MINOR_VER && dv.getUint32(16, true) === MTTY_PORTS;
  }

  /** mtty_disable_files: both sessions end; the driver drops its references. */
  #disableFiles(): void {
    for (const file of [this.#saving, this.#resuming]) {
      file?.disable();
      file?.unref();
    }
    this.#saving = this.#resuming = undefined;
  }
}

/** A data file of mtty (struct mtty_migration_file): read-only while saving, write-only while resuming. */
class MttyMigFile extends SimFile {
  readonly kind = 'vfio-mig-data' as const;
  readonly bytes: Uint8Array;
  filled = 0;
  #pos = 0;
  #disabled = false;

  constructor(
    private readonly owner: MttyMigration,
    readonly direction: 'save' | 'resume',
  ) {
    super();
    this.bytes = new Uint8Array(owner.streamSize);
    owner.context.census.add('data_fd');
  }

  append(data: Uint8Array): void {
    this.bytes.set(data, this.filled);
    this.filled += data.byteLength;
  }

  /** mtty_disable_file: reads and writes fail with ENODEV from now on. */
  disable(): void {
    this.#disabled = true;
    this.filled = this.#pos = 0;
  }

  /** mtty_save_read: what is filled and not read yet; 0 at any end, temporary or not. */
  override read(buf: Uint8Array): number {
    if (this.direction !== 'save') fail('EBADF', 'a resuming data fd is opened write-only');
    if (this.#disabled) fail('ENODEV', 'the migration session of this data fd has ended');
    if (this.#pos > this.filled) fail('EINVAL');
    const n = Math.min(this.filled - this.#pos, buf.byteLength);
    buf.set(this.bytes.subarray(this.#pos, this.#pos + n));
    this.#pos += n;
    return n;
  }

  /** mtty_resume_write. */
  override write(buf: Uint8Array): number {
    if (this.direction !== 'resume') fail('EBADF', 'a saving data fd is opened read-only');
    if (this.#pos + buf.byteLength > this.bytes.byteLength) fail('ENOMEM', `mtty's stream is ${this.bytes.byteLength} bytes`);
    if (this.#disabled) fail('ENODEV', 'the migration session of this data fd has ended');
    this.bytes.set(buf, this.#pos);
    this.#pos += buf.byteLength;
    const crossesHeader = this.filled < MTTY_HEADER_SIZE && this.filled + buf.byteLength >= MTTY_HEADER_SIZE;
    this.filled += buf.byteLength;
    if (crossesHeader && !this.owner.headerValid(this.bytes)) fail('EFAULT', 'the mtty migration header does not validate');
    return buf.byteLength;
  }

  /** mtty_precopy_ioctl (the saving file only). */
  override ioctl(request: number, arg: IoctlArg): number {
    if (this.direction !== 'save' || request !== VFIO_MIG_GET_PRECOPY_INFO) return fail('ENOTTY');
    const user = UserArg.of(arg, this.owner.context.memory);
    const minsz = vfio_precopy_info.size;
    const info = vfio_precopy_info.decode(user.read(0, minsz));
    if (info.argsz < minsz) fail('EINVAL', `argsz ${info.argsz} < ${minsz}`);
    if (!this.owner.precopying) fail('EINVAL', 'VFIO_MIG_GET_PRECOPY_INFO is only valid in PRE_COPY and PRE_COPY_P2P');
    if (this.#disabled) fail('ENODEV', 'the migration session of this data fd has ended');
    if (this.#pos > this.filled) fail('EINVAL');
    user.write(0, vfio_precopy_info.encode({ ...info, initial_bytes: BigInt(this.filled - this.#pos), dirty_bytes: 0n }));
    return 0;
  }

  protected override release(): void {
    this.owner.context.census.remove('data_fd');
  }
}
