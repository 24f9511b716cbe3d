// vfio-user: (1) a register read round trip through the device server (REGION_READ of edu's ID
// register, decoded, dispatched to the model and answered) against the same socket carrying a
// canned reply of the same size back (the transport's round trip with no protocol work), and
// against a raw node:net Unix socket ping-pong of the same byte counts (Node's own sockets,
// which cannot carry fds); (2) the
// model's DMA into guest RAM through the client's mapped memfd against the same DMA as DMA_WRITE
// messages the client answers; (3) a register read through vmmkit's client (proxy and device I/O)
// against a bare request loop. Both ends run in this process over a socketpair.

import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LinuxHost } from '@vmmkit/core';
import { MAP_SHARED, MFD_CLOEXEC, PROT_READ, PROT_WRITE, VFIO_PCI_CONFIG_REGION_INDEX } from '@vmmkit/core/uapi';
import {
  DEFAULT_CAPABILITIES, SocketTransport, UnixSocket, VFIO_USER_DMA_MAP, VFIO_USER_DMA_WRITE, VFIO_USER_REGION_READ,
  VFIO_USER_REGION_WRITE, VFIO_USER_VERSION, encodeDmaMap, encodeDmaWriteReply, encodeMessage, encodeRegionAccess,
  encodeVersion, isReply, replyHeader, type VfioUserMessage, type VfioUserTransport,
} from '@vmmkit/core/vfio-user';
import { createModel, type SimBar, type SimDeviceBus, type SimPciModel } from '@vmmkit/sim';
import { VfioUserServer } from '@vmmkit/vfio-user-server';
import { VfioUserDeviceIo, VfioUserProxy } from '@vmmkit/backend-vfio-user';
import { compareAsync, type Benchmark, type Row } from './harness.js';

const READS = 2000;
const DMA_PAGES = 512;
const PAGE = 4096;

/** A client end: request/reply by id, and a hook for the server's own commands. */
class BenchClient {
  #id = 0;
  readonly #waiting = new Map<number, (m: VfioUserMessage) => void>();
  onCommand: (m: VfioUserMessage) => void = () => {};

  constructor(readonly transport: VfioUserTransport) {
    transport.start({
      message: (m) => {
        if (isReply(m.header)) {
          this.#waiting.get(m.header.msgId)?.(m);
          this.#waiting.delete(m.header.msgId);
        } else this.onCommand(m);
      },
      closed: () => {},
    });
  }

  request(command: number, payload: Uint8Array, fds: number[] = []): Promise<VfioUserMessage> {
    const msgId = this.#id++ & 0xffff;
    const reply = new Promise<VfioUserMessage>((resolve) => this.#waiting.set(msgId, resolve));
    this.transport.send(encodeMessage({ msgId, command, flags: 0, error: 0 }, payload), fds);
    return reply;
  }
}

/** A device whose BAR0 write of n makes n page-sized DMA writes to IOVA 0. */
class DmaPump implements SimPciModel {
  readonly kind = 'dma-pump';
  readonly config = new Uint8Array(256);
  readonly bars: readonly SimBar[] = [{ index: 0, size: 0x1000n, type: 'mem32' }];
  readonly interrupts = { intx: false, msi: 0, msix: 0 };
  #bus: SimDeviceBus | undefined;
  readonly #page = new Uint8Array(PAGE).fill(0x5a);

  connect(bus: SimDeviceBus): void {
    this.#bus = bus;
  }

  barRead(): bigint {
    return 0n;
  }

  barWrite(_bar: number, _offset: number, _size: number, value: bigint): void {
    for (let i = 0n; i < value; i++) this.#bus!.dmaWrite((i % 16n) * BigInt(PAGE), this.#page);
  }

  reset(): void {}
}

async function connected(model: SimPciModel, host: LinuxHost): Promise<{ client: BenchClient; close(): Promise<void> }> {
  const [a, b] = UnixSocket.pair();
  const server = new VfioUserServer({ model, host, tickMs: 0 });
  server.serve(new SocketTransport(b));
  const client = new BenchClient(new SocketTransport(a));
  await client.request(VFIO_USER_VERSION, encodeVersion({ major: 0, minor: 0, capabilities: DEFAULT_CAPABILITIES }));
  return { client, close: async () => { client.transport.close(); await server.close(); } };
}

async function registerRead(host: LinuxHost): Promise<Row> {
  const served = await connected(createModel({ model: 'edu' }), host);
  const read = encodeRegionAccess({ offset: 0n, region: 0, count: 4 });
  // The baseline: the same socket kind, the peer answering every message with a canned reply.
  const [a, b] = UnixSocket.pair();
  const echo = new SocketTransport(b);
  const canned = encodeRegionAccess({ offset: 0n, region: 0, count: 4, data: new Uint8Array(4) });
  echo.start({ message: (m) => echo.send(encodeMessage(replyHeader(m.header), canned)), closed: () => {} });
  const raw = new BenchClient(new SocketTransport(a));
  const loop = (c: BenchClient) => async (): Promise<void> => {
    for (let i = 0; i < READS; i++) await c.request(VFIO_USER_REGION_READ, read);
  };
  const r = await compareAsync({ trials: 9, baseline: loop(raw), subject: loop(served.client) });
  raw.transport.close();
  echo.close();
  await served.close();
  return {
    benchmark: 'vfio-user', case: 'register read round trip', ratio: r.ratio, baseline: 'same socket, canned reply',
    note: `${((r.subjectMs * 1000) / READS).toFixed(1)} us per read (CPU); goal >= 0.67x (<= 1.5x the socket)`,
  };
}

/** The same round trips as raw bytes over node:net: 32 bytes out, 36 back, one at a time. */
async function rawNetReads(): Promise<{ loop: () => Promise<void>; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'vmmkit-bench-'));
  const path = join(dir, 'raw.sock');
  const server = net.createServer((s) => {
    let pending = 0;
    const reply = Buffer.alloc(36);
    s.on('data', (d) => {
      pending += d.byteLength;
      for (; pending >= 32; pending -= 32) s.write(reply);
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  const client = net.connect(path);
  await new Promise<void>((r) => client.once('connect', r));
  const request = Buffer.alloc(32);
  let got = 0;
  let wake: (() => void) | undefined;
  client.on('data', (d) => {
    got += d.byteLength;
    wake?.();
  });
  const one = async (): Promise<void> => {
    const want = got + 36;
    client.write(request);
    while (got < want) await new Promise<void>((r) => (wake = r));
  };
  return {
    loop: async () => {
      for (let i = 0; i < READS; i++) await one();
    },
    close: async () => {
      client.destroy();
      await new Promise((r) => server.close(r));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function rawNetRead(host: LinuxHost): Promise<Row> {
  const served = await connected(createModel({ model: 'edu' }), host);
  const read = encodeRegionAccess({ offset: 0n, region: 0, count: 4 });
  const raw = await rawNetReads();
  const r = await compareAsync({
    trials: 9, baseline: raw.loop,
    subject: async () => {
      for (let i = 0; i < READS; i++) await served.client.request(VFIO_USER_REGION_READ, read);
    },
  });
  await raw.close();
  await served.close();
  const us = (ms: number): string => ((ms * 1000) / READS).toFixed(1);
  return {
    benchmark: 'vfio-user', case: 'register read round trip', ratio: r.ratio, baseline: 'node:net ping-pong, same bytes',
    note: `${us(r.subjectMs)} us against ${us(r.baselineMs)} us per round trip (CPU); goal >= 0.67x`,
  };
}

/** The client's own round trip (VfioUserProxy with its timeout per command, VfioUserDeviceIo decoding) against a bare request loop to the same server. */
async function clientRead(host: LinuxHost): Promise<Row> {
  const bare = await connected(createModel({ model: 'edu' }), host);
  const [a, b] = UnixSocket.pair();
  const server = new VfioUserServer({ model: createModel({ model: 'edu' }), host, tickMs: 0 });
  server.serve(new SocketTransport(b));
  const proxy = new VfioUserProxy({ device: 'bench-edu', transport: new SocketTransport(a), host });
  await proxy.connect();
  const io = new VfioUserDeviceIo(proxy, host);
  const read = encodeRegionAccess({ offset: 0n, region: 0, count: 4 });
  const r = await compareAsync({
    trials: 9,
    baseline: async () => {
      for (let i = 0; i < READS; i++) await bare.client.request(VFIO_USER_REGION_READ, read);
    },
    subject: async () => {
      for (let i = 0; i < READS; i++) await io.regionRead(0, 0n, 4);
    },
  });
  proxy.close();
  await server.close();
  await bare.close();
  return {
    benchmark: 'vfio-user', case: 'register read through the client', ratio: r.ratio, baseline: 'bare request loop, same server',
    note: 'VfioUserProxy + VfioUserDeviceIo: id matching, the stall deadline, reply checks',
  };
}

async function dmaPaths(host: LinuxHost): Promise<Row> {
  const setUp = async (withFile: boolean): Promise<{ pump: () => Promise<void>; close(): Promise<void> }> => {
    const served = await connected(new DmaPump(), host);
    const { client } = served;
    await client.request(VFIO_USER_REGION_WRITE, encodeRegionAccess({ offset: 4n, region: VFIO_PCI_CONFIG_REGION_INDEX, count: 2, data: new Uint8Array([6, 0]) }));
    const size = 16 * PAGE;
    let release = (): void => {};
    if (withFile) {
      const fd = host.memfdCreate('bench-ram', MFD_CLOEXEC);
      host.ftruncate(fd, BigInt(size));
      const mapping = host.mmap(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0n);
      await client.request(VFIO_USER_DMA_MAP, encodeDmaMap({ flags: 3, offset: 0n, address: 0n, size: BigInt(size) }), [fd]);
      release = () => { mapping.unmap(); host.close(fd); };
    } else {
      await client.request(VFIO_USER_DMA_MAP, encodeDmaMap({ flags: 3, offset: 0n, address: 0n, size: BigInt(size) }));
    }
    // The message path: the client stores each DMA_WRITE into its RAM and answers it.
    const ram = new Uint8Array(size);
    let received = 0;
    let done = (): void => {};
    client.onCommand = (m) => {
      if (m.header.command !== VFIO_USER_DMA_WRITE) return;
      const dv = new DataView(m.payload.buffer, m.payload.byteOffset);
      const at = Number(dv.getBigUint64(0, true));
      ram.set(m.payload.subarray(16), at);
      client.transport.send(encodeMessage(replyHeader(m.header), encodeDmaWriteReply(BigInt(at), m.payload.byteLength - 16)));
      if (++received === DMA_PAGES) done();
    };
    const kick = encodeRegionAccess({ offset: 0n, region: 0, count: 8, data: new Uint8Array(new BigUint64Array([BigInt(DMA_PAGES)]).buffer) });
    return {
      pump: async () => {
        received = 0;
        const all = withFile ? Promise.resolve() : new Promise<void>((r) => (done = r));
        await client.request(VFIO_USER_REGION_WRITE, kick);
        await all;
      },
      close: async () => { await served.close(); release(); },
    };
  };
  const mapped = await setUp(true);
  const messages = await setUp(false);
  const r = await compareAsync({ trials: 9, baseline: messages.pump, subject: mapped.pump });
  await mapped.close();
  await messages.close();
  return {
    benchmark: 'vfio-user', case: `device DMA, ${DMA_PAGES} x 4 KiB`, ratio: r.ratio, baseline: 'DMA_WRITE messages',
    note: 'through the client\'s mapped memfd',
  };
}

export const vfioUserBenchmark: Benchmark = {
  name: 'vfio-user',
  async run() {
    const host = new LinuxHost();
    return [await registerRead(host), await rawNetRead(host), await clientRead(host), await dmaPaths(host)];
  },
};
