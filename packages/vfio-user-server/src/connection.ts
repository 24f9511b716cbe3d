// One client's session with the device server: version negotiation first, then every command
// dispatched to the device's parts, replies (or error replies) sent unless NO_REPLY was asked,
// and on the end of the connection every fd closed and every window unmapped.

import { ERRNO, VmmError, type HostKernel } from '@vmmkit/core';
import { VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_FLAGS_RESET, VFIO_PCI_NUM_IRQS } from '@vmmkit/core/uapi';
import {
  VFIO_USER_DEVICE_FEATURE, VFIO_USER_DEVICE_GET_INFO, VFIO_USER_DEVICE_GET_IRQ_INFO, VFIO_USER_DEVICE_GET_REGION_INFO,
  VFIO_USER_DEVICE_GET_REGION_IO_FDS, VFIO_USER_DEVICE_RESET, VFIO_USER_DEVICE_SET_IRQS, VFIO_USER_DMA_MAP,
  VFIO_USER_DMA_UNMAP, VFIO_USER_DMA_WRITE, VFIO_USER_F_TYPE_COMMAND, VFIO_USER_MIG_DATA_READ, VFIO_USER_MIG_DATA_WRITE,
  VFIO_USER_REGION_READ, VFIO_USER_REGION_WRITE, VFIO_USER_REGION_WRITE_MULTI, VFIO_USER_VERSION, VfioUserProtocolError,
  decodeDmaMap, decodeDmaUnmap, decodeFeature, decodeMigData, decodeMigDataRead, decodeQuery, decodeRegionAccess,
  decodeSetIrqs, decodeVersion, decodeWriteMulti, encodeDeviceInfo, encodeDmaUnmap, encodeDmaWrite, encodeFeature,
  decodeRegionIoFdsRequest, encodeIrqInfo, encodeMessage, encodeMigData, encodeRegionAccess, encodeRegionInfo,
  encodeVersion, encodeWriteMultiReply, isErrorReply, isReply, negotiateVersion, replyHeader, vfioUserCommandName,
  wantsNoReply, type VfioUserMessage, type VfioUserTransport, type VfioUserVersion,
} from '@vmmkit/core/vfio-user';
import { SimDmaFault, SimErrno, type SimPciModel } from '@vmmkit/sim';
import type { DeviceFeatures } from './device-features.js';
import type { DeviceRegions } from './device-regions.js';
import { DmaWindows, closeQuietly } from './dma-windows.js';
import { DeviceInterrupts } from './interrupts.js';
import type { BusClient, ModelBus } from './model-bus.js';
import { RegionIoFds } from './region-io-fds.js';
import { VfioUserRequestError } from './request-error.js';

/** The device a connection serves (owned by the server, shared by its successive connections). */
export interface ServedDevice {
  readonly host: HostKernel;
  readonly bus: ModelBus;
  readonly regions: DeviceRegions;
  readonly features: DeviceFeatures;
  readonly version: VfioUserVersion;
  readonly model: SimPciModel;
  /** A function level reset of the model and its migration driver. */
  reset(): void;
  log(line: string): void;
}

/** What a command is answered with: the reply payload and the fds that go with it. */
interface Handled {
  readonly payload?: Uint8Array;
  readonly fds: readonly number[];
}

/** The fds of a reply that passes none (shared, so frozen). */
const NO_FDS: readonly number[] = Object.freeze([]);

/** One connected client. */
export class VfioUserConnection implements BusClient {
  readonly dma: DmaWindows;
  readonly irqs: DeviceInterrupts;
  /** The ioeventfds handed out with GET_REGION_IO_FDS. */
  readonly ioFds: RegionIoFds;
  #negotiated: VfioUserVersion | undefined;
  #nextId = 0;
  /** Messages handled, and commands refused: for the log and tests. */
  handled = 0;
  refused = 0;
  readonly #closed: Promise<VmmError | undefined>;

  constructor(private readonly device: ServedDevice, private readonly transport: VfioUserTransport) {
    this.dma = new DmaWindows(device.host, device.version.capabilities.maxDmaMaps);
    this.irqs = new DeviceInterrupts(device.host, device.model);
    this.ioFds = new RegionIoFds(device.host, device.model, device.log);
    this.#closed = new Promise((resolve) => {
      transport.start({
        message: (m) => this.#onMessage(m),
        closed: (error) => resolve(this.#teardown(error)),
      });
    });
  }

  /** Resolves when the client is gone and everything it held is released (with why it ended). */
  get closed(): Promise<VmmError | undefined> {
    return this.#closed;
  }

  /** End the session from this side. */
  close(): void {
    this.transport.close();
  }

  dmaWriteMessage(iova: bigint, data: Uint8Array): void {
    if (!this.transport.open) throw new SimDmaFault(this.device.model.kind, iova, data.byteLength, true, 'the client is gone');
    const max = this.#negotiated?.capabilities.maxDataXferSize ?? data.byteLength;
    for (let at = 0; at < data.byteLength; at += max) {
      const piece = data.subarray(at, Math.min(at + max, data.byteLength));
      // Posted: the reply (or its error, ENODEV with bus mastering off in QEMU) arrives later.
      this.transport.send(encodeMessage({ msgId: this.#nextId++ & 0xffff, command: VFIO_USER_DMA_WRITE, flags: VFIO_USER_F_TYPE_COMMAND, error: 0 },
        encodeDmaWrite(iova + BigInt(at), piece)));
    }
  }

  #onMessage(m: VfioUserMessage): void {
    if (isReply(m.header)) return this.#onReply(m);
    this.handled++;
    let reply: Handled | undefined;
    let errno: number | undefined;
    const owned = m.fds.length ? [...m.fds] : [];
    try {
      reply = this.#dispatch(m, owned);
    } catch (e) {
      errno = this.#errnoOf(e, m);
    } finally {
      for (const fd of owned) closeQuietly(this.device.host, fd);
    }
    if (wantsNoReply(m.header) || !this.transport.open) return;
    if (reply) this.transport.send(encodeMessage(replyHeader(m.header), reply.payload), reply.fds);
    else this.transport.send(encodeMessage(replyHeader(m.header, errno)));
  }

  /** A reply to a DMA_WRITE this server sent: an error means the write was lost. */
  #onReply(m: VfioUserMessage): void {
    for (const fd of m.fds) closeQuietly(this.device.host, fd);
    if (isErrorReply(m.header)) {
      this.device.bus.faults.push(new SimDmaFault(this.device.model.kind, 0n, 0, true, `the client refused ${vfioUserCommandName(m.header.command)}: errno ${m.header.error}`));
    }
  }

  /**
   * Handle one command. `owned` holds the message's fds: a handler that takes one removes it
   * (it then closes it itself, in every case), the caller closes the rest.
   */
  #dispatch(m: VfioUserMessage, owned: number[]): Handled {
    const { command } = m.header;
    const p = m.payload;
    if (command === VFIO_USER_VERSION) return { payload: this.#version(p, owned), fds: NO_FDS };
    const caps = this.#negotiated?.capabilities;
    if (!caps) throw new VfioUserProtocolError(command, 'the first command must be VFIO_USER_VERSION');
    const d = this.device;
    switch (command) {
      case VFIO_USER_DMA_MAP: {
        const map = decodeDmaMap(p, m.fds);
        this.dma.map(map, owned.splice(0)[0]);
        return { fds: NO_FDS };
      }
      case VFIO_USER_DMA_UNMAP: {
        const u = decodeDmaUnmap(p, m.fds);
        this.dma.unmap(u);
        return { payload: encodeDmaUnmap(u), fds: NO_FDS };
      }
      case VFIO_USER_DEVICE_GET_INFO:
        decodeQuery(command, p, m.fds);
        return { payload: encodeDeviceInfo({ flags: VFIO_DEVICE_FLAGS_RESET | VFIO_DEVICE_FLAGS_PCI, numRegions: d.regions.count, numIrqs: VFIO_PCI_NUM_IRQS }), fds: NO_FDS };
      case VFIO_USER_DEVICE_GET_REGION_INFO: {
        const q = decodeQuery(command, p, m.fds);
        const { info, fd } = d.regions.info(q.index);
        return { payload: encodeRegionInfo(info, q.argsz), fds: fd === undefined ? NO_FDS : [fd] };
      }
      case VFIO_USER_DEVICE_GET_REGION_IO_FDS: {
        const q = decodeRegionIoFdsRequest(p, m.fds);
        d.regions.info(q.index);
        return this.ioFds.answer(q, caps.maxMsgFds);
      }
      case VFIO_USER_DEVICE_GET_IRQ_INFO:
        return { payload: encodeIrqInfo(this.irqs.info(decodeQuery(command, p, m.fds).index)), fds: NO_FDS };
      case VFIO_USER_DEVICE_SET_IRQS: {
        const req = decodeSetIrqs(p, m.fds);
        this.irqs.set(req, owned.splice(0));
        return { fds: NO_FDS };
      }
      case VFIO_USER_REGION_READ: {
        const a = decodeRegionAccess(command, p, m.fds, caps.maxDataXferSize);
        return { payload: encodeRegionAccess({ offset: a.offset, region: a.region, count: a.count, data: d.regions.read(a.region, a.offset, a.count) }), fds: NO_FDS };
      }
      case VFIO_USER_REGION_WRITE: {
        const a = decodeRegionAccess(command, p, m.fds, caps.maxDataXferSize);
        d.regions.write(a.region, a.offset, a.data!);
        return { payload: encodeRegionAccess({ offset: a.offset, region: a.region, count: a.count }), fds: NO_FDS };
      }
      case VFIO_USER_REGION_WRITE_MULTI: {
        const writes = decodeWriteMulti(p, m.fds);
        for (const w of writes) d.regions.write(w.region, w.offset, w.data!);
        return { payload: encodeWriteMultiReply(writes.length), fds: NO_FDS };
      }
      case VFIO_USER_DEVICE_RESET:
        if (p.byteLength !== 0 || m.fds.length) throw new VfioUserProtocolError(command, 'a reset carries no payload and no fds');
        d.reset();
        return { fds: NO_FDS };
      case VFIO_USER_DEVICE_FEATURE: {
        const f = decodeFeature(p, m.fds);
        const { data } = d.features.handle(f);
        return { payload: encodeFeature(f.flags, data), fds: NO_FDS };
      }
      case VFIO_USER_MIG_DATA_READ:
        return { payload: encodeMigData(d.features.readData(decodeMigDataRead(p, m.fds, caps.maxDataXferSize))), fds: NO_FDS };
      case VFIO_USER_MIG_DATA_WRITE:
        d.features.writeData(decodeMigData(command, p, m.fds, caps.maxDataXferSize));
        return { fds: NO_FDS };
      default:
        throw new VfioUserProtocolError(command, 'is not a command a client sends');
    }
  }

  /** VERSION: agree on the client's major, the lower minor and the smaller capabilities. */
  #version(payload: Uint8Array, fds: readonly number[]): Uint8Array {
    if (this.#negotiated) throw new VfioUserProtocolError(VFIO_USER_VERSION, 'the version was negotiated already');
    const client = decodeVersion(payload, fds);
    const agreed = negotiateVersion(client, this.device.version);
    if (!agreed) {
      // The specification: a server that does not speak the major closes the connection.
      this.device.log(`client speaks vfio-user ${client.major}.${client.minor}; closing`);
      queueMicrotask(() => this.transport.close());
      throw new VfioUserRequestError('EINVAL', `major version ${client.major} is not ${this.device.version.major}`);
    }
    this.#negotiated = agreed;
    return encodeVersion(agreed);
  }

  /** The errno a failed command is answered with; nothing a client sends stops the server. */
  #errnoOf(e: unknown, m: VfioUserMessage): number {
    this.refused++;
    const message = e instanceof Error ? e.message : String(e);
    this.device.log(`${vfioUserCommandName(m.header.command)} (id ${m.header.msgId}) refused: ${message}`);
    if (e instanceof VfioUserRequestError) return ERRNO[e.errno];
    if (e instanceof VfioUserProtocolError) return e.errnoNumber;
    if (e instanceof SimErrno) return ERRNO[e.code];
    const errno = (e as { errnoNumber?: unknown }).errnoNumber;
    if (typeof errno === 'number') return errno;
    // A fault in the model itself: the client gets EIO, the log gets the stack.
    if (!(e instanceof VmmError)) this.device.log(e instanceof Error && e.stack ? e.stack : message);
    return ERRNO.EIO;
  }

  /** The client is gone: release what it held; the device state stays, as the specification asks. */
  #teardown(error: VmmError | undefined): VmmError | undefined {
    if (this.device.bus.client === this) this.device.bus.client = undefined;
    this.irqs.dispose();
    this.ioFds.dispose();
    this.device.features.clientGone();
    try {
      this.dma.dispose();
    } catch (e) {
      this.device.log(`unmapping the client's DMA windows failed: ${String(e)}`);
    }
    if (error) this.device.log(`client connection ended: ${error.message}`);
    return error;
  }
}
