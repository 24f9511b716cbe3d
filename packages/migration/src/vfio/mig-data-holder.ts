// The data transfer session VfioMigration holds (QEMU's VFIOMigration.data_fd): at most one at a
// time, from the state change that started it until it ends, and what reads, writes and
// precopy queries need of it. The session itself is the device I/O's (a data fd for the kernel,
// MIG_DATA_READ / MIG_DATA_WRITE messages for vfio-user).

import { VfioError, type VfioMigDataSession, type VfioMigReadResult, type VfioPrecopyInfo } from '@vmmkit/core';

/** At most one session at a time; owned from `adopt` until `close`. */
export class MigDataHolder {
  #session: VfioMigDataSession | undefined;

  /**
   * @param device the device's name, for errors.
   * @param chunkSize bytes one read asks for (QEMU's data_buffer_size).
   * @param warn told when releasing a session reports an error (it is released all the same).
   */
  constructor(
    private readonly device: string,
    private readonly chunkSize: number,
    private readonly warn: (message: string) => void,
  ) {}

  /** Whether a session is held. */
  get held(): boolean {
    return this.#session !== undefined;
  }

  /** The session's data fd, or -1 (no session, or a transport without fds). */
  get fd(): number {
    return this.#session?.fd ?? -1;
  }

  /**
   * Own a session the device just started. When one is held already (the device was reset
   * behind vmmkit's back, ending that session), the new one is closed and EBADF reported, as
   * QEMU's "data_fd out of sync": the stream read so far can no longer be trusted.
   */
  adopt(session: VfioMigDataSession): void {
    if (!this.#session) {
      this.#session = session;
      return;
    }
    this.#closeQuietly(session);
    throw new VfioError('take the new migration data session', this.device, {
      detail: `data_fd out of sync: ${this.#session.fd === -1 ? 'a session' : `fd ${this.#session.fd}`} of an earlier session is still held`,
      errno: 'EBADF',
    });
  }

  /** Release the session, if any. Idempotent. */
  close(): void {
    const session = this.#session;
    this.#session = undefined;
    if (session) this.#closeQuietly(session);
  }

  /** One read of up to the chunk size; the bytes are valid until the next read. */
  async read(): Promise<VfioMigReadResult> {
    return this.#held('read the migration data').read(this.chunkSize);
  }

  /** Write all of `bytes` to the session. */
  async write(bytes: Uint8Array): Promise<void> {
    return this.#held('write the migration data').write(bytes);
  }

  /** VFIO_MIG_GET_PRECOPY_INFO, zeros when the transport cannot say. */
  async precopyInfo(): Promise<VfioPrecopyInfo> {
    return (await this.#held('query the precopy size').precopyInfo()) ?? { initialBytes: 0n, dirtyBytes: 0n };
  }

  #held(step: string): VfioMigDataSession {
    if (!this.#session) throw new VfioError(step, this.device, { detail: 'no data transfer session', errno: 'EBADF' });
    return this.#session;
  }

  #closeQuietly(session: VfioMigDataSession): void {
    try {
      session.close();
    } catch (e) {
      this.warn(e instanceof Error ? e.message : String(e));
    }
  }
}
