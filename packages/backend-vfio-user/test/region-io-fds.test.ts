// vfio-pci over vfio-user fetches each BAR's ioeventfds (DEVICE_GET_REGION_IO_FDS) at realize and
// offers them through PciFunction.barEventfds: the nic's doorbell eventfd rings the doorbell in
// the server; a server that refuses the command means none; a malformed answer fails realize
// naming the device; entries a PCI function cannot offer are dropped with their fds; unrealize
// closes them; and a fault at any host call leaves a typed error and the census at baseline.

import { describe, expect, it } from 'vitest';
import { HostError, VfioError, VmmError, Vmm } from '@vmmkit/core';
import {
  InProcessTransport, VFIO_USER_DEVICE_GET_REGION_IO_FDS, VFIO_USER_IOEVENTFD_FLAG_DATAMATCH, VFIO_USER_IOEVENTFD_FLAG_PIO,
  VFIO_USER_IOREGIONFD_FLAG_POSTED_WRITES, decodeRegionIoFdsRequest, encodeMessage, encodeRegionIoFdsReply, replyHeader,
  type VfioUserIoFdSubRegion, type VfioUserTransport,
} from '@vmmkit/core/vfio-user';
import { NIC_BAR2_SIZE, NIC_DOORBELL, SimHost, createModel } from '@vmmkit/sim';
import { failEachHostCall, stepErrors } from '@vmmkit/sim/testing';
import { VfioPciDevice, vfioPciOptions } from '@vmmkit/device-vfio-pci';
import { VfioUserServer } from '@vmmkit/vfio-user-server';
import { VFIO_IOMMU_USER, VfioUserDevice, VfioUserProxy, vfioUserPlugin } from '@vmmkit/backend-vfio-user';
import { intercepting } from './support/intercepting-transport.js';

/** How a test server answers GET_REGION_IO_FDS in place of the real one: an errno, or sub-regions and how many fds. */
type Answer = { errno: number } | { short: number } | { subRegions: readonly VfioUserIoFdSubRegion[]; fds: number; index?: number };

interface Realized {
  readonly host: SimHost;
  readonly vmm: Vmm;
  readonly server: VfioUserServer;
  readonly warnings: string[];
  realize(): Promise<VfioPciDevice>;
  close(): Promise<void>;
}

/** A VM with memfd RAM and the nic served in-process; `answer` replaces the server's GET_REGION_IO_FDS for BAR2. */
async function nicRig(host: SimHost, answer?: Answer): Promise<Realized> {
  const vmm = await Vmm.create({ host, plugins: [vfioUserPlugin()], memory: [{ gpa: 0n, size: 0x10_0000n, name: 'ram' }], memoryBacking: 'memfd' });
  const warnings: string[] = [];
  vmm.events.on('vfio:warning', (w) => warnings.push(w.message));
  let server: VfioUserServer;
  try {
    server = new VfioUserServer({ model: createModel({ model: 'nic', bdf: '0000:00:04.0' }), host, tickMs: 0 });
  } catch (e) {
    await vmm.close();
    throw e;
  }
  let proxy: VfioUserProxy | undefined;
  return {
    host, vmm, server, warnings,
    async realize() {
      const [client, end] = InProcessTransport.pair(host);
      server.serve(answer ? answering(end, host, answer) : end);
      const p = new VfioUserProxy({ device: 'vu-nic', transport: client, host, timeoutMs: 1000 });
      proxy = p;
      return VfioPciDevice.realize({
        id: 'nic0', host, events: vmm.events, vfio: vmm.vfio, as: vmm.pciBus.deviceAddressSpace(), backend: VFIO_IOMMU_USER,
        device: new VfioUserDevice('vu-nic', p, host), driver: 'vfio-user-pci', options: vfioPciOptions({}), release: () => p.close(),
      });
    },
    async close() {
      proxy?.close();
      await server.close();
      await vmm.close();
    },
  };
}

/** The server's end, with GET_REGION_IO_FDS of BAR2 answered by the test. */
function answering(end: VfioUserTransport, host: SimHost, answer: Answer): VfioUserTransport {
  return intercepting(end, (m, pass) => {
    if (m.header.command !== VFIO_USER_DEVICE_GET_REGION_IO_FDS) return pass();
    const request = decodeRegionIoFdsRequest(m.payload, m.fds);
    if (request.index !== 2) return pass();
    if ('errno' in answer) return end.send(encodeMessage(replyHeader(m.header, answer.errno)));
    if ('short' in answer) {
      // Always the fixed part alone: "I need argsz `short` for one sub-region".
      const head = new Uint8Array(16);
      new DataView(head.buffer).setUint32(0, answer.short, true);
      new DataView(head.buffer).setUint32(8, 2, true);
      new DataView(head.buffer).setUint32(12, 1, true);
      return end.send(encodeMessage(replyHeader(m.header), head));
    }
    const { payload, complete } = encodeRegionIoFdsReply(answer.index ?? 2, answer.subRegions, request.argsz);
    const fds = complete ? Array.from({ length: answer.fds }, () => host.eventfd(0, 0o4000)) : [];
    end.send(encodeMessage(replyHeader(m.header), payload), fds);
    for (const fd of fds) host.close(fd); // the peer got duplicates
  });
}

const ONE = new Uint8Array(new BigUint64Array([1n]).buffer);

async function until(read: () => Promise<bigint>, expected: bigint): Promise<bigint> {
  let value = await read();
  for (let i = 0; i < 200 && value !== expected; i++) {
    await new Promise((r) => setTimeout(r, 2));
    value = await read();
  }
  return value;
}

describe('vfio-pci over vfio-user: BAR eventfds from GET_REGION_IO_FDS', () => {
  it('offers the nic doorbell\'s eventfd for BAR2 and none elsewhere; a signal rings the doorbell; unrealize closes it', async () => {
    const host = new SimHost();
    const baseline = host.census();
    const rig = await nicRig(host);
    const d = await rig.realize();
    expect(d.barEventfds(2)).toEqual([{ offset: BigInt(NIC_DOORBELL), size: 4, fd: expect.any(Number) }]);
    for (const bar of [0, 1, 3, 4, 5]) expect(d.barEventfds(bar)).toEqual([]);
    const fd = d.barEventfds(2)[0]!.fd;
    expect(await d.barRead(2, NIC_DOORBELL, 4)).toBe(0n);
    host.write(fd, ONE); // what KVM does on the guest's write to the doorbell
    expect(await until(() => d.barRead(2, NIC_DOORBELL, 4), 1n)).toBe(1n);
    expect(rig.server.connection!.ioFds.signals).toBe(1);
    await d.unrealize();
    expect(d.barEventfds(2)).toEqual([]);
    expect(() => host.write(fd, ONE)).toThrow(HostError);
    await rig.close();
    expect(rig.warnings).toEqual([]);
    expect(host.census()).toEqual(baseline);
  });

  it('a server that refuses the command (as one predating it would) offers none, and realize goes on', async () => {
    const host = new SimHost();
    const baseline = host.census();
    const rig = await nicRig(host, { errno: 38 /* ENOSYS */ });
    const d = await rig.realize();
    expect(d.barEventfds(2)).toEqual([]);
    expect(Number(await d.barRead(2, NIC_DOORBELL, 4))).toBe(0);
    await d.unrealize();
    await rig.close();
    expect(host.census()).toEqual(baseline);
  });

  it('a malformed answer fails realize naming the device (EPROTO), and its fds are closed', async () => {
    const host = new SimHost();
    const baseline = host.census();
    const bad: VfioUserIoFdSubRegion = { type: 'ioeventfd', offset: 0x4000n, size: 4n, fdIndex: 1, flags: 0 };
    const rig = await nicRig(host, { subRegions: [bad], fds: 1 });
    const error = await rig.realize().then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(VfioError);
    expect(error).toMatchObject({ errno: 'EPROTO' });
    expect((error as Error).message).toMatch(/vu-nic.*read the io fds of region 2.*fd_index 1 is beyond the 1 file descriptors/);
    await rig.close();
    expect(host.census()).toEqual(baseline);
  });

  it('a server that keeps asking for more room, or for more than max_data_xfer_size, fails realize (EPROTO)', async () => {
    for (const [short, why] of [[56, /asked for more room twice/], [0xffff_fff0, /needs 4294967280 bytes, more than max_data_xfer_size/]] as const) {
      const host = new SimHost();
      const baseline = host.census();
      const rig = await nicRig(host, { short });
      const error = await rig.realize().then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(VfioError);
      expect(error).toMatchObject({ errno: 'EPROTO' });
      expect((error as Error).message).toMatch(why);
      await rig.close();
      expect(host.census()).toEqual(baseline);
    }
  });

  it('drops what a PCI function cannot offer, with a warning and its fd closed; keeps shared fds once; asks again for room', async () => {
    const host = new SimHost();
    const baseline = host.census();
    const io = (offset: bigint, size: bigint, fdIndex: number, flags = 0, datamatch?: bigint): VfioUserIoFdSubRegion =>
      ({ type: 'ioeventfd', offset, size, fdIndex, flags, ...(datamatch === undefined ? {} : { datamatch }) });
    const subRegions: VfioUserIoFdSubRegion[] = [
      io(0x4000n, 4n, 0),
      io(0x4004n, 2n, 0, VFIO_USER_IOEVENTFD_FLAG_DATAMATCH, 7n),
      io(BigInt(NIC_BAR2_SIZE - 2), 4n, 1),
      io(0x4008n, 0n, 2),
      io(0x400cn, 4n, 3, VFIO_USER_IOEVENTFD_FLAG_PIO),
      { type: 'ioregionfd', offset: 0x4010n, size: 0n, fdIndex: 4, flags: VFIO_USER_IOREGIONFD_FLAG_POSTED_WRITES, userData: 1n },
      io(0x4020n, 1n, 5), io(0x4021n, 1n, 5), io(0x4022n, 1n, 5),
    ];
    const rig = await nicRig(host, { subRegions, fds: 6 });
    const d = await rig.realize();
    expect(d.barEventfds(2).map(({ offset, size, datamatch }) => [offset, size, datamatch])).toEqual([
      [0x4000n, 4, undefined], [0x4004n, 2, 7n], [0x4020n, 1, undefined], [0x4021n, 1, undefined], [0x4022n, 1, undefined],
    ]);
    const fds = new Set(d.barEventfds(2).map((e) => e.fd));
    expect(fds.size).toBe(2);
    expect(rig.warnings).toEqual([
      `vu-nic: BAR2 ioeventfd at 0x${(NIC_BAR2_SIZE - 2).toString(16)} not used: outside the BAR's ${NIC_BAR2_SIZE} bytes`,
      'vu-nic: BAR2 ioeventfd at 0x4008 not used: width 0 (any-width ioeventfds are not offered)',
      'vu-nic: BAR2 ioeventfd at 0x400c not used: a port I/O ioeventfd',
    ]);
    const held = host.census();
    await d.unrealize();
    expect(host.census()).not.toEqual(held);
    await rig.close();
    expect(host.census()).toEqual(baseline);
  });
});

/** The whole life over one host: VM, server, realize with the doorbell's eventfd, a signal, unrealize, close. */
async function life(host: SimHost): Promise<unknown[]> {
  const { errors, step } = stepErrors();
  let rig: Realized | undefined;
  await step(async () => { rig = await nicRig(host); });
  if (!rig) return errors;
  let d: VfioPciDevice | undefined;
  await step(async () => { d = await rig!.realize(); });
  if (d) {
    const device = d;
    await step(async () => {
      for (const e of device.barEventfds(2)) host.write(e.fd, ONE);
      await new Promise((r) => setImmediate(r));
      await device.barRead(2, NIC_DOORBELL, 4);
    });
    await step(() => device.unrealize());
  }
  await step(() => rig!.close());
  return errors;
}

describe('vfio-pci over vfio-user BAR eventfds: fail the nth host call', () => {
  it('every failure is typed and the census returns to its baseline', async () => {
    const { calls, surfaced, clean } = await failEachHostCall(life, ({ what, errors, host, baseline }) => {
      for (const e of errors) expect(e, `${what}: ${String(e)}`).toBeInstanceOf(VmmError);
      expect(host.census(), what).toEqual(baseline);
    });
    expect(clean.errors).toEqual([]);
    expect(clean.host.census()).toEqual(clean.baseline);
    expect(calls).toBeGreaterThan(20);
    expect(surfaced, `${surfaced} of ${calls} faults surfaced`).toBeGreaterThan(calls / 2);
  }, 120_000);
});
