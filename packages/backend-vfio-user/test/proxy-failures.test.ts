// A server that dies, stalls or breaks the protocol: the device gets a typed VfioError naming it
// and is marked failed, guest memory and the rest of the VM go on, detach still works and the
// host's census returns to its baseline. And the proxy's side of the server's DMA messages:
// answered from guest RAM, refused with ENODEV while bus mastering is off.

import { afterEach, describe, expect, it } from 'vitest';
import { VfioError, ERRNO } from '@vmmkit/core';
import { PCI_COMMAND, VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX } from '@vmmkit/core/uapi';
import {
  DEFAULT_CAPABILITIES, InProcessTransport, VFIO_USER_DEVICE_GET_INFO, VFIO_USER_DMA_MAP, VFIO_USER_DMA_READ, VFIO_USER_DMA_WRITE,
  VFIO_USER_F_TYPE_COMMAND, VFIO_USER_REGION_READ, VFIO_USER_VERSION, decodeDmaReadReply, encodeDeviceInfo, encodeDmaRead,
  encodeDmaWrite, encodeMessage, encodeVersion, isErrorReply, replyHeader, type VfioUserMessage, type VfioUserTransport,
} from '@vmmkit/core/vfio-user';
import {
  EDU_DMA_RUN, EDU_DMA_START, EDU_DMA_TO_PCI, EDU_ID, SimHost,
} from '@vmmkit/sim';
import { VfioUserProxy } from '@vmmkit/backend-vfio-user';
import { makeClientRig, type ClientRig } from './support/client-rig.js';
import { intercepting } from './support/intercepting-transport.js';
import { le64, runEduDma } from './support/edu-io.js';


/** The server's end, dropping the commands `stall` names while it holds them (a server stuck on them). */
function stalling(end: VfioUserTransport, host: SimHost, stall: Set<number>): VfioUserTransport {
  return intercepting(end, (m, pass) => {
    if (!stall.has(m.header.command)) return pass();
    for (const fd of m.fds) host.close(fd);
  });
}

describe('vfio-user client: a server that fails', () => {
  let rig: ClientRig | undefined;
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
  });

  it('a server that dies: pending and later requests fail naming the device, which is marked failed; the VM goes on', async () => {
    const host = new SimHost();
    const base = host.census();
    rig = await makeClientRig({ host });
    const { backend, device, space, memory, serverEnd } = rig;
    await backend.attachDevice('vu0', device, space);
    const pending = device.io.regionRead(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_ID), 4);
    serverEnd.close();
    const error = await pending.then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(VfioError);
    expect(error).toMatchObject({ device: 'vu0', errno: 'ENOTCONN' });
    expect((error as Error).message).toBe('vu0: failed to talk to the vfio-user server: the server closed the connection');
    expect(device.failed).toBe(true);
    await expect(device.io.regionRead(VFIO_PCI_BAR0_REGION_INDEX, 0n, 4)).rejects.toBe(device.failure);
    // Guest memory is untouched and usable; the device leaves its container cleanly.
    memory.write(0x100n, new Uint8Array([1]));
    expect(memory.read(0x100n, 1)[0]).toBe(1);
    await backend.detachDevice(device);
    expect(space.containers).toEqual([]);
    await rig.close();
    rig = undefined;
    expect(host.census()).toEqual(base);
  });

  it('a server that stalls: the request times out with ETIMEDOUT naming the device and command', async () => {
    const host = new SimHost();
    const base = host.census();
    const stall = new Set<number>();
    rig = await makeClientRig({ host, wrapServerEnd: (end) => stalling(end, host, stall), proxy: { timeoutMs: 50 } });
    const { backend, device, space } = rig;
    await backend.attachDevice('vu0', device, space);
    stall.add(VFIO_USER_REGION_READ);
    const error = await device.io.regionRead(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_ID), 4).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(VfioError);
    expect(error).toMatchObject({ device: 'vu0', errno: 'ETIMEDOUT' });
    expect((error as Error).message).toMatch(/VFIO_USER_REGION_READ: no reply within 50 ms/);
    expect(device.failure).toBe(error);
    expect(rig.proxy.pendingCount).toBe(0);
    await backend.detachDevice(device);
    await rig.close();
    rig = undefined;
    expect(host.census()).toEqual(base);
  });

  it('an attach whose DMA_MAP goes unanswered fails naming the device, with no container left', async () => {
    const host = new SimHost();
    const base = host.census();
    const stall = new Set([VFIO_USER_DMA_MAP]);
    rig = await makeClientRig({ host, wrapServerEnd: (end) => stalling(end, host, stall), proxy: { timeoutMs: 50 } });
    const { backend, device, space } = rig;
    const error = await backend.attachDevice('vu0', device, space).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(VfioError);
    expect(error).toMatchObject({ device: 'vu0', errno: 'ETIMEDOUT' });
    expect((error as Error).message).toMatch(/^vu0: failed to attach to vfio-user-container-1/);
    expect(space.containers).toEqual([]);
    expect(device.container).toBeUndefined();
    expect(device.failed).toBe(true);
    await rig.close();
    rig = undefined;
    expect(host.census()).toEqual(base);
  });

  it('serves edu DMA into RAM without a file through DMA_WRITE messages from guest memory', async () => {
    rig = await makeClientRig({ backing: 'anonymous' });
    const { backend, device, space, memory, server } = rig;
    await backend.attachDevice('vu0', device, space);
    expect(server.connection!.dma.count).toBe(1);
    const io = device.io;
    await io.regionWrite(VFIO_PCI_CONFIG_REGION_INDEX, BigInt(PCI_COMMAND), new Uint8Array([0x06, 0x00]));
    memory.write(0x4000n, new Uint8Array([0xaa, 0xaa, 0xaa, 0xaa]));
    const run = async (src: bigint, dst: bigint, cmd: number): Promise<void> => {
      await runEduDma(io, src, dst, cmd);
      await new Promise((r) => setImmediate(r)); // the DMA message's reply reaches the server
    };
    // edu's buffer (zeros after power-on) goes out in a posted DMA_WRITE the proxy answers.
    await run(BigInt(EDU_DMA_START), 0x4000n, EDU_DMA_RUN | EDU_DMA_TO_PCI);
    expect([...memory.read(0x4000n, 4)]).toEqual([0, 0, 0, 0]);
    expect(server.faults).toEqual([]);
  });
});

describe('vfio-user proxy against a scripted server', () => {
  /** A proxy on one end of a pair; the test plays the server on the other. */
  function scripted(host: SimHost): { proxy: VfioUserProxy; server: VfioUserTransport; received: VfioUserMessage[] } {
    const [a, b] = InProcessTransport.pair(host);
    const received: VfioUserMessage[] = [];
    b.start({ message: (m) => received.push(m), closed: () => undefined });
    return { proxy: new VfioUserProxy({ device: 'vu1', transport: a, host, timeoutMs: 1000 }), server: b, received };
  }
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 4; i++) await new Promise((r) => setImmediate(r));
  };

  it('answers DMA_READ / DMA_WRITE from guest memory only while bus mastering is on (ENODEV otherwise)', async () => {
    const host = new SimHost();
    const { proxy, server, received } = scripted(host);
    const ram = new Uint8Array(0x100);
    let busMaster = false;
    proxy.dmaTarget = {
      busMaster: () => busMaster,
      read: (address, count) => {
        if (address + BigInt(count) > BigInt(ram.byteLength)) throw new RangeError('outside guest memory');
        return ram.slice(Number(address), Number(address) + count);
      },
      write: (address, data) => ram.set(data, Number(address)),
    };
    const command = (msgId: number, cmd: number, payload: Uint8Array): void =>
      server.send(encodeMessage({ msgId, command: cmd, flags: VFIO_USER_F_TYPE_COMMAND, error: 0 }, payload));
    command(1, VFIO_USER_DMA_WRITE, encodeDmaWrite(0x10n, new Uint8Array([1, 2])));
    await settle();
    expect(received[0]!.header).toMatchObject({ msgId: 1, error: ERRNO.ENODEV });
    expect(isErrorReply(received[0]!.header)).toBe(true);
    expect(ram[0x10]).toBe(0);
    busMaster = true;
    command(2, VFIO_USER_DMA_WRITE, encodeDmaWrite(0x10n, new Uint8Array([1, 2])));
    command(3, VFIO_USER_DMA_READ, encodeDmaRead(0x10n, 2));
    command(4, VFIO_USER_DMA_READ, encodeDmaRead(0x1000n, 2)); // outside guest memory
    await settle();
    expect(isErrorReply(received[1]!.header)).toBe(false);
    expect([...ram.subarray(0x10, 0x12)]).toEqual([1, 2]);
    expect([...decodeDmaReadReply(received[2]!.payload, 2)]).toEqual([1, 2]);
    expect(received[3]!.header).toMatchObject({ msgId: 4, error: ERRNO.EFAULT });
    expect(proxy.failure).toBeUndefined();
    proxy.close();
  });

  it('refuses a server version with minor > 0, and fails on a reply nobody asked for', async () => {
    const host = new SimHost();
    const a = scripted(host);
    const connecting = a.proxy.connect();
    await settle();
    const req = a.received[0]!;
    expect(req.header.command).toBe(VFIO_USER_VERSION);
    a.server.send(encodeMessage(replyHeader(req.header), encodeVersion({ major: 0, minor: 1, capabilities: DEFAULT_CAPABILITIES })));
    await expect(connecting).rejects.toMatchObject({ device: 'vu1', errno: 'EINVAL', message: expect.stringMatching(/minor version 1/) });
    expect(a.proxy.failure).toBeDefined();

    const b = scripted(host);
    const info = b.proxy.request(VFIO_USER_DEVICE_GET_INFO);
    await settle();
    b.server.send(encodeMessage(replyHeader({ ...b.received[0]!.header, msgId: 999 }), encodeDeviceInfo({ flags: 0, numRegions: 0, numIrqs: 0 })));
    await expect(info).rejects.toMatchObject({ device: 'vu1', errno: 'EPROTO' });
    expect(b.proxy.failure?.message).toMatch(/id 999 no command is waiting for/);
  });
});
