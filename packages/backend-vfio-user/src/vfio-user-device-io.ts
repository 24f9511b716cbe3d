// A device's I/O over a vfio-user proxy (QEMU's vfio_user_device_io_ops): device and region
// info, region reads and writes, IRQ info and SET_IRQS with eventfds, and reset, each a message
// where the kernel backends make an ioctl or a pread/pwrite on the device fd. Every call is
// async: the reply comes back through the event loop.

import type {
  DmaLoggingRange, HostKernel, VfioDeviceIo, VfioIrqInfo, VfioIrqSet, VfioMigDataSession, VfioRegionInfo, VfioRegionIoEventfd,
  VfioRegionWriteOptions,
} from '@vmmkit/core';
import {
  VFIO_USER_DEVICE_FEATURE, VFIO_USER_DEVICE_GET_INFO, VFIO_USER_DEVICE_GET_IRQ_INFO, VFIO_USER_DEVICE_GET_REGION_INFO,
  VFIO_USER_DEVICE_RESET, VFIO_USER_DEVICE_SET_IRQS, VFIO_USER_REGION_READ, VFIO_USER_REGION_WRITE, decodeDeviceInfo,
  decodeFeatureReply, decodeIrqInfo, decodeRegionInfo, decodeRegionReadReply, encodeFeature, encodeQuery,
  encodeRegionAccess, encodeSetIrqs, type VfioUserDeviceInfo, type VfioUserMessage,
} from '@vmmkit/core/vfio-user';
import { VfioError } from '@vmmkit/core';
import { PCI_COMMAND, PCI_COMMAND_MASTER, VFIO_PCI_CONFIG_REGION_INDEX } from '@vmmkit/core/uapi';
import type { VfioUserProxy } from './vfio-user-proxy.js';
import { VfioUserMigrationIo, isDmaLoggingFeature } from './vfio-user-migration-io.js';
import { fetchRegionIoEventfds } from './vfio-user-region-io-fds.js';

/** The device I/O of one vfio-user device. */
export class VfioUserDeviceIo implements VfioDeviceIo {
  #busMaster = false;
  /** The files the server sent with region info, by region: this I/O's until `closeRegionFiles`. */
  readonly #regionFiles = new Map<number, number>();
  readonly #migration: VfioUserMigrationIo;

  /**
   * @param postedWrites send the writes callers allow to be posted with NO_REPLY (QEMU's default;
   *   its x-no-posted-writes turns it off).
   */
  constructor(readonly proxy: VfioUserProxy, private readonly host: HostKernel, readonly postedWrites = true) {
    this.#migration = new VfioUserMigrationIo(proxy, (reply, step, decode) => this.#decode(reply, step, decode));
  }

  /**
   * The bus-master bit of the command register as last written through `regionWrite` (cleared
   * by `reset`): the server's DMA_READ / DMA_WRITE are refused while it is off, as QEMU checks
   * its bus-master address space before answering them.
   */
  get busMaster(): boolean {
    return this.#busMaster;
  }

  get device(): string {
    return this.proxy.device;
  }

  /** DEVICE_GET_INFO: flags and the numbers of regions and IRQ indexes. */
  async deviceInfo(): Promise<VfioUserDeviceInfo> {
    const reply = await this.proxy.request(VFIO_USER_DEVICE_GET_INFO, encodeQuery(VFIO_USER_DEVICE_GET_INFO, 0));
    return this.#decode(reply, 'read the device info', () => decodeDeviceInfo(reply.payload));
  }

  /**
   * DEVICE_GET_REGION_INFO: asked once with room for the fixed structure and again with the
   * argsz the server says it needs for the capabilities (sparse mmap areas), as the ioctl is. The
   * file the server shares the region through becomes `mmapFd` and stays this I/O's (asking
   * again replaces it) until `closeRegionFiles`.
   */
  async regionInfo(index: number): Promise<VfioRegionInfo> {
    let argsz = 32;
    for (let attempt = 0; attempt < 2; attempt++) {
      const reply = await this.proxy.request(VFIO_USER_DEVICE_GET_REGION_INFO, encodeQuery(VFIO_USER_DEVICE_GET_REGION_INFO, index, argsz));
      const info = this.#decode(reply, `read the info of region ${index}`, () => decodeRegionInfo(reply.payload), true);
      if (reply.fds.length > 1) {
        this.#closeFds(reply.fds);
        throw new VfioError(`read the info of region ${index}`, this.device, { detail: `the server sent ${reply.fds.length} files, at most 1 belongs to a region`, errno: 'EPROTO' });
      }
      if (info.argsz > argsz && attempt === 0) {
        this.#closeFds(reply.fds);
        argsz = info.argsz;
        continue;
      }
      const region: VfioRegionInfo = { index, flags: info.flags, size: info.size, offset: info.mmapOffset, ...(info.sparse ? { sparseAreas: info.sparse } : {}) };
      const previous = this.#regionFiles.get(index);
      if (previous !== undefined) this.#closeFds([previous]);
      this.#regionFiles.delete(index);
      if (!reply.fds.length) return region;
      this.#regionFiles.set(index, reply.fds[0]!);
      return { ...region, mmapFd: reply.fds[0]! };
    }
    throw new VfioError(`read the info of region ${index}`, this.device, { detail: 'the server asked for more room twice', errno: 'EPROTO' });
  }

  /**
   * DEVICE_GET_REGION_IO_FDS: the region's ioeventfds, the fds the caller's; none when the
   * server offers none or refuses the command.
   */
  regionIoEventfds(index: number): Promise<VfioRegionIoEventfd[]> {
    return fetchRegionIoEventfds(this.proxy, this.host, index);
  }

  /** REGION_READ: `count` bytes at `offset` of region `region`, in pieces no larger than the negotiated transfer size. */
  async regionRead(region: number, offset: bigint, count: number): Promise<Uint8Array> {
    const out = new Uint8Array(count);
    const max = this.proxy.capabilities.maxDataXferSize;
    for (let done = 0; done < count;) {
      const n = Math.min(max, count - done);
      const reply = await this.proxy.request(VFIO_USER_REGION_READ, encodeRegionAccess({ offset: done === 0 ? offset : offset + BigInt(done), region, count: n }));
      let data: Uint8Array;
      try {
        data = decodeRegionReadReply(reply.payload, n);
      } catch (e) {
        this.#closeFds(reply.fds);
        throw new VfioError(`read region ${region} at 0x${(offset + BigInt(done)).toString(16)}`, this.device, { cause: e, errno: 'EPROTO' });
      }
      // Named only on failure: a register read is a few µs, and the name costs a bigint to string.
      this.#closeFds(reply.fds);
      out.set(data, done);
      done += n;
    }
    return out;
  }

  /** REGION_WRITE: `data` at `offset` of region `region`, waiting for each piece's reply. */
  async regionWrite(region: number, offset: bigint, data: Uint8Array, options: VfioRegionWriteOptions = {}): Promise<void> {
    if (region === VFIO_PCI_CONFIG_REGION_INDEX && offset <= BigInt(PCI_COMMAND) && offset + BigInt(data.byteLength) > BigInt(PCI_COMMAND)) {
      this.#busMaster = (data[PCI_COMMAND - Number(offset)]! & PCI_COMMAND_MASTER) !== 0;
    }
    // Config space writes are never posted: they change how the device decodes and masters.
    const posted = options.posted === true && this.postedWrites && region !== VFIO_PCI_CONFIG_REGION_INDEX;
    const max = this.proxy.capabilities.maxDataXferSize;
    for (let done = 0; done < data.byteLength;) {
      const n = Math.min(max, data.byteLength - done);
      const payload = encodeRegionAccess({ offset: offset + BigInt(done), region, count: n, data: data.subarray(done, done + n) });
      if (posted) this.proxy.post(VFIO_USER_REGION_WRITE, payload);
      else this.#closeFds((await this.proxy.request(VFIO_USER_REGION_WRITE, payload)).fds);
      done += n;
    }
  }

  /** Close the files region info brought (at detach; mappings made from them stay valid). */
  closeRegionFiles(): void {
    this.#closeFds([...this.#regionFiles.values()]);
    this.#regionFiles.clear();
  }

  /** DEVICE_GET_IRQ_INFO for one IRQ index. */
  async irqInfo(index: number): Promise<VfioIrqInfo> {
    const reply = await this.proxy.request(VFIO_USER_DEVICE_GET_IRQ_INFO, encodeQuery(VFIO_USER_DEVICE_GET_IRQ_INFO, index));
    return this.#decode(reply, `read the info of IRQ index ${index}`, () => decodeIrqInfo(reply.payload));
  }

  /**
   * DEVICE_SET_IRQS; with DATA_EVENTFD the eventfds go with the message (they stay the
   * caller's), in batches no larger than the negotiated max_msg_fds.
   */
  async setIrqs(request: VfioIrqSet): Promise<void> {
    const { eventfds = [], ...set } = request;
    const max = this.proxy.capabilities.maxMsgFds;
    if (eventfds.length <= max) {
      this.#closeFds((await this.proxy.request(VFIO_USER_DEVICE_SET_IRQS, encodeSetIrqs(set), eventfds)).fds);
      return;
    }
    for (let i = 0; i < eventfds.length; i += max) {
      const batch = eventfds.slice(i, i + max);
      const reply = await this.proxy.request(VFIO_USER_DEVICE_SET_IRQS, encodeSetIrqs({ ...set, start: set.start + i, count: batch.length }), batch);
      this.#closeFds(reply.fds);
    }
  }

  /**
   * DEVICE_FEATURE: the feature's data as the server answered it (its errno when it refused).
   * The DMA logging features answer ENOTTY here, without a message, when VERSION did not agree
   * on the migration capability (so a PROBE says the device cannot log).
   */
  async feature(flags: number, payload: Uint8Array = new Uint8Array(0)): Promise<Uint8Array> {
    if (isDmaLoggingFeature(flags) && !this.proxy.capabilities.migration) {
      throw new VfioError(`use device feature ${flags & 0xffff}`, this.device, { detail: 'the server did not agree to the migration capability in VERSION', errno: 'ENOTTY' });
    }
    const reply = await this.proxy.request(VFIO_USER_DEVICE_FEATURE, encodeFeature(flags, payload));
    return this.#decode(reply, `use device feature ${flags & 0xffff}`, () => decodeFeatureReply(reply.payload));
  }

  /** DEVICE_RESET: the device is RUNNING again and any migration data session is over. */
  async reset(): Promise<void> {
    this.#busMaster = false;
    this.#closeFds((await this.proxy.request(VFIO_USER_DEVICE_RESET)).fds);
    this.#migration.resetDone();
  }

  /** SET MIG_DEVICE_STATE; a session that starts moves its data with MIG_DATA_READ / MIG_DATA_WRITE. */
  setMigState(state: number): Promise<VfioMigDataSession | undefined> {
    return this.#migration.setState(state);
  }

  /** DMA_LOGGING_START (needs the negotiated migration capability, else ENOTTY). */
  dmaLoggingStart(ranges: readonly DmaLoggingRange[], pageSize: number): Promise<void> {
    return this.#migration.dmaLoggingStart(ranges, pageSize);
  }

  /** DMA_LOGGING_STOP. */
  dmaLoggingStop(): Promise<void> {
    return this.#migration.dmaLoggingStop();
  }

  /** DMA_LOGGING_REPORT, the reply's bitmap or'ed into `bitmap`, split at max_bitmap_size. */
  dmaLoggingReport(iova: bigint, length: bigint, pageSize: number, bitmap: Uint8Array): Promise<void> {
    return this.#migration.dmaLoggingReport(iova, length, pageSize, bitmap);
  }

  /** Decode a reply; a malformed one is the server's fault, named with the step. Its fds are closed unless `keepFds`. */
  #decode<T>(reply: VfioUserMessage, step: string, decode: () => T, keepFds = false): T {
    let value: T;
    try {
      value = decode();
    } catch (e) {
      this.#closeFds(reply.fds);
      throw new VfioError(step, this.device, { cause: e, errno: 'EPROTO' });
    }
    if (!keepFds) this.#closeFds(reply.fds);
    return value;
  }

  #closeFds(fds: readonly number[]): void {
    for (const fd of fds) {
      try {
        this.host.close(fd);
      } catch {
        // close(2) frees the descriptor even when it fails.
      }
    }
  }
}
