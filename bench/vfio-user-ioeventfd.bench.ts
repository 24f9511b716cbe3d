// vfio-user doorbells: a register write reaching a served model through the eventfd the server
// handed out with DEVICE_GET_REGION_IO_FDS (written here as KVM would on the guest's write, then
// heard by the server's poll) against the same write as a REGION_WRITE message and its reply.
// Both ends run in this process over a socketpair (LinuxHost); each write is awaited until the
// model has it, one at a time.

import { LinuxHost } from '@vmmkit/core';
import {
  DEFAULT_CAPABILITIES, SocketTransport, UnixSocket, VFIO_USER_DEVICE_GET_REGION_IO_FDS, VFIO_USER_REGION_WRITE,
  VFIO_USER_VERSION, encodeMessage, encodeRegionAccess, encodeRegionIoFdsRequest, encodeVersion, isReply,
  type VfioUserMessage, type VfioUserTransport,
} from '@vmmkit/core/vfio-user';
import type { SimBar, SimIoeventfdRegister, SimPciModel } from '@vmmkit/sim';
import { VfioUserServer } from '@vmmkit/vfio-user-server';
import { compareAsync, type Benchmark, type Row } from './harness.js';

const RINGS = 2000;

/** A device with one doorbell register that wakes whoever waits for the next ring. */
class Doorbell implements SimPciModel {
  readonly kind = 'doorbell';
  readonly config = new Uint8Array(256);
  readonly bars: readonly SimBar[] = [{ index: 0, size: 0x1000n, type: 'mem32' }];
  readonly interrupts = { intx: false, msi: 0, msix: 0 };
  readonly ioeventfds: readonly SimIoeventfdRegister[] = [{ bar: 0, offset: 0, size: 4 }];
  rings = 0;
  #wake: (() => void) | undefined;

  connect(): void {}

  barRead(): bigint {
    return BigInt(this.rings);
  }

  barWrite(): void {
    this.rings++;
    this.#wake?.();
  }

  /** Resolves at the next ring. */
  next(): Promise<void> {
    return new Promise((resolve) => (this.#wake = resolve));
  }

  reset(): void {}
}

/** The client's end: one request at a time, by id. */
function requester(transport: VfioUserTransport): (command: number, payload: Uint8Array) => Promise<VfioUserMessage> {
  let id = 0;
  const waiting = new Map<number, (m: VfioUserMessage) => void>();
  transport.start({
    message: (m) => {
      if (!isReply(m.header)) return;
      waiting.get(m.header.msgId)?.(m);
      waiting.delete(m.header.msgId);
    },
    closed: () => {},
  });
  return (command, payload) => {
    const msgId = id++ & 0xffff;
    const reply = new Promise<VfioUserMessage>((resolve) => waiting.set(msgId, resolve));
    transport.send(encodeMessage({ msgId, command, flags: 0, error: 0 }, payload));
    return reply;
  };
}

async function doorbell(host: LinuxHost): Promise<Row> {
  const model = new Doorbell();
  const [a, b] = UnixSocket.pair();
  const server = new VfioUserServer({ model, host, tickMs: 0 });
  server.serve(new SocketTransport(b));
  const client = new SocketTransport(a);
  const request = requester(client);
  await request(VFIO_USER_VERSION, encodeVersion({ major: 0, minor: 0, capabilities: DEFAULT_CAPABILITIES }));
  const reply = await request(VFIO_USER_DEVICE_GET_REGION_IO_FDS, encodeRegionIoFdsRequest(0, 1));
  const efd = reply.fds[0]!;
  const one = new Uint8Array(new BigUint64Array([1n]).buffer);
  const write = encodeRegionAccess({ offset: 0n, region: 0, count: 4, data: new Uint8Array(4) });
  const r = await compareAsync({
    trials: 9,
    baseline: async () => {
      for (let i = 0; i < RINGS; i++) await request(VFIO_USER_REGION_WRITE, write);
    },
    subject: async () => {
      for (let i = 0; i < RINGS; i++) {
        const rang = model.next();
        host.write(efd, one);
        await rang;
      }
    },
  });
  host.close(efd);
  client.close();
  await server.close();
  return {
    benchmark: 'vfio-user', case: 'doorbell write reaching the model', ratio: r.ratio, baseline: 'REGION_WRITE round trip',
    note: `${((r.subjectMs * 1000) / RINGS).toFixed(1)} us per ring through the ioeventfd (GET_REGION_IO_FDS), written as KVM would`,
  };
}

export const vfioUserIoeventfdBenchmark: Benchmark = {
  name: 'vfio-user-ioeventfd',
  async run() {
    return [await doorbell(new LinuxHost())];
  },
};
