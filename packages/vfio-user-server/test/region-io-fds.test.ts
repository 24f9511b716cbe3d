// DEVICE_GET_REGION_IO_FDS served: a model's ioeventfd registers come back as ioeventfd
// sub-regions with their eventfds, and a signal on one (what KVM does on the guest's write)
// reaches the model's barWrite without a message: in-process, over a real socket in this
// process, and to a server in a second process. The eventfds live as long as the client.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArgumentError, LinuxHost, type HostKernel } from '@vmmkit/core';
import {
  InProcessTransport, SocketTransport, VfioUserReplyError, VFIO_USER_DEVICE_GET_REGION_IO_FDS, VFIO_USER_DEVICE_RESET, VFIO_USER_IOEVENTFD_FLAG_DATAMATCH,
  decodeRegionIoFdsReply, encodeRegionIoFdsRequest, type VfioUserRegionIoFds,
} from '@vmmkit/core/vfio-user';
import { NIC_DOORBELL, SimHost, buildConfigSpace, createModel, type SimBar, type SimIoeventfdRegister, type SimPciModel } from '@vmmkit/sim';
import { VfioUserServer, serveSocket } from '@vmmkit/vfio-user-server';
import { TestClient } from './support/test-client.js';
import { makeRig } from './support/rig.js';

async function ioFds(client: TestClient, index: number, room = 4): Promise<VfioUserRegionIoFds & { fds: readonly number[] }> {
  const reply = await client.request(VFIO_USER_DEVICE_GET_REGION_IO_FDS, encodeRegionIoFdsRequest(index, room));
  return { ...decodeRegionIoFdsReply(reply.payload, reply.fds, index), fds: reply.fds };
}

/** What KVM does on a guest write the ioeventfd covers: add 1 to the eventfd. */
function signal(host: HostKernel, fd: number): void {
  host.write(fd, new Uint8Array(new BigUint64Array([1n]).buffer));
}

/** Poll `read` until it gives `expected` (the server hears the eventfd from its event loop). */
async function until(read: () => Promise<number>, expected: number): Promise<number> {
  let value = await read();
  for (let i = 0; i < 200 && value !== expected; i++) {
    await new Promise((r) => setTimeout(r, 5));
    value = await read();
  }
  return value;
}

describe('GET_REGION_IO_FDS in-process', () => {
  it('hands out the nic doorbell\'s eventfd; a signal rings the doorbell without a message', async () => {
    const host = new SimHost();
    const baseline = host.census();
    const { server, client } = await makeRig('nic', { host });
    const answer = await ioFds(client, 2);
    expect(answer.subRegions).toEqual([{ type: 'ioeventfd', offset: BigInt(NIC_DOORBELL), size: 4n, fdIndex: 0, flags: 0 }]);
    expect(answer.fds).toHaveLength(1);
    let reads = 0;
    const doorbells = () => {
      reads++;
      return client.read32(2, NIC_DOORBELL);
    };
    expect(await doorbells()).toBe(0);
    const handled = server.connection!.handled - reads;
    signal(host, answer.fds[0]!);
    expect(await until(doorbells, 1)).toBe(1);
    expect(server.connection!.ioFds.signals).toBe(1);
    // Only the reads were messages: the doorbell write itself was not one.
    expect(server.connection!.handled - handled).toBe(reads);
    // Signals that pile up before the server reads them coalesce into one write.
    for (let i = 0; i < 3; i++) signal(host, answer.fds[0]!);
    expect(await until(doorbells, 2)).toBe(2);
    expect(server.connection!.ioFds.signals).toBe(2);
    // Asking again sends the same eventfd (another duplicate), and a device reset keeps it.
    const again = await ioFds(client, 2);
    await client.request(VFIO_USER_DEVICE_RESET);
    expect(await doorbells()).toBe(0);
    signal(host, again.fds[0]!);
    expect(await until(doorbells, 1)).toBe(1);
    for (const fd of [...answer.fds, ...again.fds]) host.close(fd);
    client.close();
    await client.closed;
    await server.close();
    expect(host.census()).toEqual(baseline);
  });

  it('answers count 0 for regions without, the count alone to a small argsz, and EINVAL for a bad index', async () => {
    const host = new SimHost();
    const { server, client } = await makeRig('nic', { host });
    for (const index of [0, 1, 7, 8]) expect(await ioFds(client, index)).toEqual({ argsz: 16, index, count: 0, subRegions: [], fds: [] });
    const before = host.census();
    expect(await ioFds(client, 2, 0)).toEqual({ argsz: 56, index: 2, count: 1, fds: [] });
    expect(host.census(), 'no eventfd is made for a reply that cannot carry it').toEqual(before);
    await expect(ioFds(client, 9)).rejects.toSatisfy((e) => e instanceof VfioUserReplyError && e.errno === 'EINVAL');
    const bad = encodeRegionIoFdsRequest(2);
    new DataView(bad.buffer).setUint32(4, 1, true);
    await expect(client.request(VFIO_USER_DEVICE_GET_REGION_IO_FDS, bad)).rejects.toSatisfy((e) => e instanceof VfioUserReplyError && e.errno === 'EINVAL');
    // A request that brings an fd is refused and the server closes its copy.
    const census = host.census();
    const stray = host.eventfd(0, 0o4000);
    await expect(client.request(VFIO_USER_DEVICE_GET_REGION_IO_FDS, encodeRegionIoFdsRequest(2, 1), [stray])).rejects.toSatisfy((e) => e instanceof VfioUserReplyError && e.errno === 'EINVAL');
    host.close(stray);
    expect(host.census()).toEqual(census);
    client.close();
    await client.closed;
    await server.close();
  });

  it('writes a datamatch register with its value and a datamatch-free one with 0; a model fault is logged', async () => {
    const host = new SimHost();
    const model = new Notify([{ bar: 0, offset: 0x10, size: 2, datamatch: 0xabn }, { bar: 0, offset: 0x20, size: 4 }, { bar: 0, offset: 0x30, size: 4 }]);
    const log: string[] = [];
    const { client, server } = await rigFor(model, host, log);
    const answer = await ioFds(client, 0);
    expect(answer.subRegions).toEqual([
      { type: 'ioeventfd', offset: 0x10n, size: 2n, fdIndex: 0, flags: VFIO_USER_IOEVENTFD_FLAG_DATAMATCH, datamatch: 0xabn },
      { type: 'ioeventfd', offset: 0x20n, size: 4n, fdIndex: 1, flags: 0 },
      { type: 'ioeventfd', offset: 0x30n, size: 4n, fdIndex: 2, flags: 0 },
    ]);
    answer.fds.forEach((fd) => signal(host, fd));
    const writes = () => Promise.resolve(model.writes.length + server.connection!.ioFds.failures);
    expect(await until(writes, 3)).toBe(3);
    expect(model.writes.sort()).toEqual(['0:16:2:171', '0:32:4:0']);
    expect(log.join('\n')).toMatch(/write of BAR0 at 0x30 through its ioeventfd failed: .*register 0x30 is broken/);
    for (const fd of answer.fds) host.close(fd);
    client.close();
    await client.closed;
    await server.close();
  });

  it('refuses with E2BIG a region with more eventfds than the client takes in one message, making none', async () => {
    const host = new SimHost();
    const model = new Notify(Array.from({ length: 17 }, (_, i) => ({ bar: 0, offset: 4 * i, size: 4 as const })));
    const { client, server } = await rigFor(model, host, []);
    const before = host.census();
    await expect(ioFds(client, 0, 17)).rejects.toSatisfy((e) => e instanceof VfioUserReplyError && e.errno === 'E2BIG');
    expect(host.census()).toEqual(before);
    client.close();
    await client.closed;
    await server.close();
  });

  it('refuses a model whose declarations cannot work, naming the register', () => {
    const bad: [SimIoeventfdRegister, RegExp][] = [
      [{ bar: 1, offset: 0, size: 4 }, /has no BAR1/],
      [{ bar: 0, offset: 2, size: 4 }, /unaligned/],
      [{ bar: 0, offset: 0x1000, size: 4 }, /outside the BAR/],
      [{ bar: 2, offset: 0, size: 4 }, /inside an mmap area/],
      [{ bar: 0, offset: 0, size: 1, datamatch: 0x100n }, /does not fit 1 bytes/],
    ];
    for (const [register, why] of bad) {
      expect(() => new VfioUserServer({ model: new Notify([register]), host: new SimHost(), tickMs: 0 })).toThrow(ArgumentError);
      expect(() => new VfioUserServer({ model: new Notify([register]), host: new SimHost(), tickMs: 0 })).toThrow(why);
    }
    expect(() => new VfioUserServer({ model: new Notify([{ bar: 0, offset: 0, size: 4 }, { bar: 0, offset: 0, size: 4 }]), host: new SimHost(), tickMs: 0 })).toThrow(/declared twice/);
  });
});

describe('GET_REGION_IO_FDS over a real socket', () => {
  let dir: string;
  const host = new LinuxHost();
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vmmkit-iofds-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('in this process: the eventfd crosses the socket, a write to it rings the doorbell, leaving closes it', async () => {
    const path = join(dir, 'nic.sock');
    const before = openFds('self');
    const served = serveSocket(path, { model: createModel({ model: 'nic' }), host, tickMs: 0 });
    const client = new TestClient(SocketTransport.connect(path), host);
    await client.version();
    const withClient = openFds('self');
    const answer = await ioFds(client, 2);
    expect(answer.fds).toHaveLength(1);
    signal(host, answer.fds[0]!);
    expect(await until(() => client.read32(2, NIC_DOORBELL), 1)).toBe(1);
    host.close(answer.fds[0]!);
    expect(openFds('self'), 'the server still holds its eventfd').toBe(withClient + 1);
    client.close();
    await client.closed;
    await served.close();
    expect(openFds('self')).toBe(before);
  }, 30_000);

  it('to a server process: the doorbell rings there, and the server closes its eventfd when the client leaves', async () => {
    const path = join(dir, 'nic-child.sock');
    const child = await startServer(path, 'nic');
    const serverFds = openFds(child.pid!);
    const client = new TestClient(SocketTransport.connect(path), host);
    await client.version();
    const answer = await ioFds(client, 2);
    signal(host, answer.fds[0]!);
    signal(host, answer.fds[0]!);
    const rang = await until(() => client.read32(2, NIC_DOORBELL), 1);
    // Two signals coalesce when they arrive before the server reads; otherwise they ring twice.
    expect([1, 2]).toContain(rang);
    host.close(answer.fds[0]!);
    client.close();
    await client.closed;
    for (let i = 0; i < 50 && openFds(child.pid!) !== serverFds; i++) await new Promise((r) => setTimeout(r, 20));
    expect(openFds(child.pid!)).toBe(serverFds);
    child.kill('SIGTERM');
    expect(await new Promise((r) => child.once('exit', r))).toBe(0);
  }, 30_000);
});

/** A model with notify registers in BAR0 (and an mmapped BAR2): records the writes it gets; 0x30 faults. */
class Notify implements SimPciModel {
  readonly kind = 'notify';
  readonly bars: readonly SimBar[] = [
    { index: 0, size: 0x1000n, type: 'mem32' },
    { index: 2, size: 0x1000n, type: 'mem32', mmapAreas: [{ offset: 0n, size: 0x1000n }] },
  ];
  readonly config = buildConfigSpace({
    vendor: 0x1234, device: 0x0001, revision: 1, classCode: 0xff0000, subsystemVendor: 0x1234, subsystemId: 1,
    command: 0, interruptPin: 0, bars: this.bars, barBase: () => 0xfe00_0000n,
  });
  readonly interrupts = { intx: false, msi: 0, msix: 0 };
  readonly writes: string[] = [];

  constructor(readonly ioeventfds: readonly SimIoeventfdRegister[]) {}

  connect(): void {}

  barRead(): bigint {
    return 0n;
  }

  barWrite(bar: number, offset: number, size: 1 | 2 | 4 | 8, value: bigint): void {
    if (offset === 0x30) throw new Error('register 0x30 is broken');
    this.writes.push(`${bar}:${offset}:${size}:${value}`);
  }

  reset(): void {}
}

async function rigFor(model: SimPciModel, host: SimHost, log: string[]) {
  const server = new VfioUserServer({ model, host, tickMs: 0, shareBars: false, log: (line) => log.push(line) });
  const [a, b] = InProcessTransport.pair(host);
  server.serve(b);
  const client = new TestClient(a, host);
  await client.version();
  return { server, client };
}

async function startServer(path: string, device: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [join(import.meta.dirname, 'fixtures/serve-child.mjs'), path, device], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += String(d)));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
  });
  return child;
}

function openFds(pid: number | 'self'): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}
