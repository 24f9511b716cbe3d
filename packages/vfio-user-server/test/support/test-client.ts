// A minimal vfio-user client for the server's tests: sends commands and awaits their replies,
// and answers the server's DMA_READ / DMA_WRITE from a byte array standing for guest RAM.

import type { HostKernel, VmmError } from '@vmmkit/core';
import {
  DEFAULT_CAPABILITIES, VFIO_USER_DMA_READ, VFIO_USER_DMA_WRITE, VFIO_USER_F_NO_REPLY, VFIO_USER_F_TYPE_COMMAND,
  VFIO_USER_REGION_READ, VFIO_USER_REGION_WRITE, VFIO_USER_VERSION, VfioUserReplyError, decodeDmaAccess,
  decodeRegionReadReply, decodeVersion, encodeDmaReadReply, encodeDmaWriteReply, encodeMessage, encodeRegionAccess,
  encodeVersion, isErrorReply, isReply, replyHeader, type VfioUserMessage, type VfioUserTransport, type VfioUserVersion,
} from '@vmmkit/core/vfio-user';

interface Pending {
  resolve(m: VfioUserMessage): void;
  reject(e: Error): void;
}

/** The client side of one connection. */
export class TestClient {
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  /** DMA_WRITE / DMA_READ messages the server sent, in order. */
  readonly dmaMessages: { command: number; address: bigint; count: bigint }[] = [];
  /** Guest memory for message-path DMA: [base, bytes]. */
  messageRam: { base: bigint; bytes: Uint8Array } | undefined;
  /** Answer DMA messages with this errno instead (QEMU answers ENODEV with bus mastering off). */
  dmaErrno: number | undefined;
  readonly closed: Promise<VmmError | undefined>;

  constructor(readonly transport: VfioUserTransport, private readonly host: HostKernel) {
    this.closed = new Promise((resolve) => {
      transport.start({
        message: (m) => this.#onMessage(m),
        closed: (e) => {
          for (const p of this.#pending.values()) p.reject(new Error(`connection closed${e ? `: ${e.message}` : ''}`));
          this.#pending.clear();
          resolve(e);
        },
      });
    });
  }

  /** Send a command and await its reply (the caller owns its fds); an error reply rejects with VfioUserReplyError. */
  request(command: number, payload: Uint8Array = new Uint8Array(0), fds: readonly number[] = []): Promise<VfioUserMessage> {
    const msgId = this.#nextId++ & 0xffff;
    const reply = new Promise<VfioUserMessage>((resolve, reject) => this.#pending.set(msgId, { resolve, reject }));
    this.transport.send(encodeMessage({ msgId, command, flags: VFIO_USER_F_TYPE_COMMAND, error: 0 }, payload), fds);
    return reply.then((m) => {
      if (isErrorReply(m.header)) throw new VfioUserReplyError(command, m.header.error);
      return m;
    });
  }

  /** Send a command that wants no reply. */
  post(command: number, payload: Uint8Array, fds: readonly number[] = []): void {
    this.transport.send(encodeMessage({ msgId: this.#nextId++ & 0xffff, command, flags: VFIO_USER_F_NO_REPLY, error: 0 }, payload), fds);
  }

  async version(capabilities = { ...DEFAULT_CAPABILITIES, maxMsgFds: 16, writeMultiple: true }): Promise<VfioUserVersion> {
    const reply = await this.request(VFIO_USER_VERSION, encodeVersion({ major: 0, minor: 0, capabilities }));
    return decodeVersion(reply.payload, reply.fds);
  }

  async read(region: number, offset: number, count: number): Promise<Uint8Array> {
    const reply = await this.request(VFIO_USER_REGION_READ, encodeRegionAccess({ offset: BigInt(offset), region, count }));
    return decodeRegionReadReply(reply.payload, count);
  }

  async read32(region: number, offset: number): Promise<number> {
    const b = await this.read(region, offset, 4);
    return new DataView(b.buffer, b.byteOffset).getUint32(0, true);
  }

  async write(region: number, offset: number, data: Uint8Array): Promise<void> {
    await this.request(VFIO_USER_REGION_WRITE, encodeRegionAccess({ offset: BigInt(offset), region, count: data.byteLength, data }));
  }

  async write32(region: number, offset: number, value: number): Promise<void> {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, value >>> 0, true);
    await this.write(region, offset, b);
  }

  async write64(region: number, offset: number, value: bigint): Promise<void> {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, value, true);
    await this.write(region, offset, b);
  }

  close(): void {
    this.transport.close();
  }

  #onMessage(m: VfioUserMessage): void {
    if (isReply(m.header)) {
      // The fds of a reply go to the caller of request(), which closes them.
      const p = this.#pending.get(m.header.msgId);
      this.#pending.delete(m.header.msgId);
      if (p) p.resolve(m);
      else for (const fd of m.fds) this.host.close(fd);
      return;
    }
    for (const fd of m.fds) this.host.close(fd);
    this.#onDma(m);
  }

  #onDma(m: VfioUserMessage): void {
    const { command } = m.header;
    if (command !== VFIO_USER_DMA_READ && command !== VFIO_USER_DMA_WRITE) return;
    const a = decodeDmaAccess(command, m.payload, [], 1 << 20);
    this.dmaMessages.push({ command, address: a.address, count: a.count });
    const ram = this.messageRam;
    const at = ram ? Number(a.address - ram.base) : -1;
    const fits = ram !== undefined && at >= 0 && at + Number(a.count) <= ram.bytes.byteLength;
    if (this.dmaErrno !== undefined || !fits) {
      this.transport.send(encodeMessage(replyHeader(m.header, this.dmaErrno ?? 14)));
      return;
    }
    if (command === VFIO_USER_DMA_WRITE) {
      ram.bytes.set(a.data!, at);
      this.transport.send(encodeMessage(replyHeader(m.header), encodeDmaWriteReply(a.address, Number(a.count))));
    } else {
      this.transport.send(encodeMessage(replyHeader(m.header), encodeDmaReadReply(a.address, ram.bytes.slice(at, at + Number(a.count)))));
    }
  }
}
