// The kernel's data transfer session: the data fd VFIO_DEVICE_FEATURE MIG_DEVICE_STATE returned
// (QEMU's VFIOMigration.data_fd and data_buffer): reads into one reusable buffer, writes that
// loop on short writes, VFIO_MIG_GET_PRECOPY_INFO, and the close that releases it.

import { VfioError } from '../errors/vmm-error.js';
import { HostError } from '../host/host-error.js';
import type { HostKernel } from '../host/host-kernel.js';
import { VFIO_MIG_GET_PRECOPY_INFO, vfio_precopy_info } from '../uapi/vfio.js';
import type { VfioMigDataSession, VfioMigReadResult, VfioPrecopyInfo } from './mig-data-session.js';
import { vfioCall } from './vfio-call.js';

/** A session over a data fd; owns the fd until `close`. */
export class KernelMigDataSession implements VfioMigDataSession {
  #fd: number;
  #buffer: Uint8Array | undefined;

  /**
   * @param fd the data fd the kernel just returned (this session owns it now).
   * @param device the device's name, for errors.
   */
  constructor(private readonly host: HostKernel, fd: number, private readonly device: string) {
    this.#fd = fd;
  }

  get fd(): number {
    return this.#fd;
  }

  /** One read() into the reusable buffer; ENOMSG (nothing more for now in PRE_COPY) is 'empty', 0 is 'end'. */
  async read(max: number): Promise<VfioMigReadResult> {
    const fd = this.#session('read the migration data');
    if (!this.#buffer || this.#buffer.byteLength < max) this.#buffer = new Uint8Array(max);
    const buffer = this.#buffer.subarray(0, max);
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
  async write(bytes: Uint8Array): Promise<void> {
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
  async precopyInfo(): Promise<VfioPrecopyInfo> {
    const fd = this.#session('query the precopy size');
    const info = vfio_precopy_info.encode();
    vfioCall('query the precopy size', this.device, () => this.host.ioctl(fd, VFIO_MIG_GET_PRECOPY_INFO, info));
    const out = vfio_precopy_info.decode(info);
    return { initialBytes: out.initial_bytes, dirtyBytes: out.dirty_bytes };
  }

  /** Close the fd. Idempotent; Linux releases the fd even when close reports an error, which is thrown. */
  close(): void {
    const fd = this.#fd;
    this.#fd = -1;
    if (fd === -1) return;
    try {
      this.host.close(fd);
    } catch (e) {
      throw new VfioError('close the migration data fd', this.device, { cause: e, detail: 'it is released all the same' });
    }
  }

  #session(step: string): number {
    if (this.#fd === -1) throw new VfioError(step, this.device, { detail: 'the data transfer session is closed', errno: 'EBADF' });
    return this.#fd;
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
