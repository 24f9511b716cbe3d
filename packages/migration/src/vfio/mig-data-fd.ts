// The data fd of a migration v2 data transfer session (QEMU's VFIOMigration.data_fd and
// data_buffer): who owns it, reads into one reusable buffer, writes that loop on short writes,
// and VFIO_MIG_GET_PRECOPY_INFO.

import { HostError, VfioError, vfioCall, type HostKernel } from '@vmmkit/core';
import { VFIO_MIG_GET_PRECOPY_INFO, vfio_precopy_info } from '@vmmkit/core/uapi';

/** What one read of the data fd gave: bytes, nothing for now (precopy drained), or end of stream. */
export type MigReadResult = Uint8Array | 'empty' | 'end';

/** VFIO_MIG_GET_PRECOPY_INFO: what PRE_COPY still has to send (estimates, in bytes). */
export interface PrecopyInfo {
  /** Of the initial state, not read yet. Drivers may want it all sent before switchover. */
  readonly initialBytes: bigint;
  /** Of state that changed since, as far as the driver knows now. */
  readonly dirtyBytes: bigint;
}

/** At most one data fd at a time; owned from `adopt` until `close`. */
export class MigDataFd {
  #fd = -1;
  #buffer: Uint8Array | undefined;

  /**
   * @param device the device's name, for errors.
   * @param chunkSize bytes one read asks for (QEMU's data_buffer_size).
   * @param warn told when closing the fd fails (the fd is released all the same).
   */
  constructor(
    private readonly host: HostKernel,
    private readonly device: string,
    private readonly chunkSize: number,
    private readonly warn: (message: string) => void,
  ) {}

  /** The fd, or -1 without a session. */
  get fd(): number {
    return this.#fd;
  }

  /**
   * Own a data fd the kernel just returned. When one is held already (the device was reset
   * behind vmmkit's back, ending that session), the new fd is closed and EBADF reported, as
   * QEMU's "data_fd out of sync": the stream read so far can no longer be trusted.
   */
  adopt(fd: number): void {
    if (this.#fd === -1) {
      this.#fd = fd;
      return;
    }
    this.#closeQuietly(fd);
    throw new VfioError('take the new migration data fd', this.device, {
      detail: `data_fd out of sync: fd ${this.#fd} of an earlier session is still held`, errno: 'EBADF',
    });
  }

  /** Close the fd, if any. Idempotent; Linux releases an fd even when close reports an error. */
  close(): void {
    const fd = this.#fd;
    this.#fd = -1;
    if (fd !== -1) this.#closeQuietly(fd);
  }

  /** One read() into the reusable buffer; ENOMSG (nothing more for now in PRE_COPY) is 'empty', 0 is 'end'. */
  read(): MigReadResult {
    const fd = this.#session('read the migration data');
    this.#buffer ??= new Uint8Array(this.chunkSize);
    const buffer = this.#buffer;
    let n: number;
    try {
      n = retryOnEintr(() => this.host.read(fd, buffer));
    } catch (e) {
      if (HostError.is(e, 'ENOMSG')) return 'empty';
      throw new VfioError('read the migration data', this.device, { cause: e });
    }
    return n === 0 ? 'end' : buffer.subarray(0, n);
  }

  /** Write all of `bytes`; the kernel may take less than offered in one write(). */
  write(bytes: Uint8Array): void {
    const fd = this.#session('write the migration data');
    for (let done = 0; done < bytes.byteLength;) {
      const n = vfioCall('write the migration data', this.device, () => retryOnEintr(() => this.host.write(fd, bytes.subarray(done))));
      // A write that takes nothing would loop forever; no driver does it, so treat it as broken.
      if (n <= 0) {
        throw new VfioError('write the migration data', this.device, {
          detail: `the data fd took no bytes at offset ${done} of ${bytes.byteLength}`, errno: 'EIO',
        });
      }
      done += n;
    }
  }

  /** VFIO_MIG_GET_PRECOPY_INFO on the data fd (valid in PRE_COPY and PRE_COPY_P2P only). */
  precopyInfo(): PrecopyInfo {
    const fd = this.#session('query the precopy size');
    const info = vfio_precopy_info.encode();
    vfioCall('query the precopy size', this.device, () => this.host.ioctl(fd, VFIO_MIG_GET_PRECOPY_INFO, info));
    const out = vfio_precopy_info.decode(info);
    return { initialBytes: out.initial_bytes, dirtyBytes: out.dirty_bytes };
  }

  #session(step: string): number {
    if (this.#fd === -1) throw new VfioError(step, this.device, { detail: 'no data transfer session', errno: 'EBADF' });
    return this.#fd;
  }

  /** Close `fd`; a failure is reported, and nothing more: Linux releases the fd number either way. */
  #closeQuietly(fd: number): void {
    try {
      this.host.close(fd);
    } catch (e) {
      this.warn(`closing the migration data fd reported ${e instanceof HostError ? e.errno : String(e)}; it is released all the same`);
    }
  }
}

function retryOnEintr(call: () => number): number {
  for (;;) {
    try {
      return call();
    } catch (e) {
      if (!HostError.is(e, 'EINTR')) throw e;
    }
  }
}
