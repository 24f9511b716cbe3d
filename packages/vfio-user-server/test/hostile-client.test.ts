// A client that sends garbage: every malformed command gets an error reply and the session goes
// on; fds that came with a refused command are closed; a broken header ends the session with
// everything released; the in-process pair itself duplicates and closes fds as a socket would.

import { describe, expect, it } from 'vitest';
import { VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_MSI_IRQ_INDEX } from '@vmmkit/core/uapi';
import {
  InProcessTransport, VFIO_USER_DEVICE_FEATURE, VFIO_USER_DEVICE_GET_INFO, VFIO_USER_DEVICE_SET_IRQS, VFIO_USER_DMA_MAP,
  VFIO_USER_DMA_READ, VFIO_USER_REGION_READ, VFIO_USER_REGION_WRITE, VFIO_USER_VERSION, VfioUserReplyError, encodeDmaMap,
  encodeMessage, encodeQuery, encodeRegionAccess, encodeSetIrqs, encodeVersion, DEFAULT_CAPABILITIES,
} from '@vmmkit/core/vfio-user';
import { SimHost, createModel } from '@vmmkit/sim';
import { VfioUserServer } from '@vmmkit/vfio-user-server';
import { TestClient } from './support/test-client.js';
import { guestRam, makeRig } from './support/rig.js';

const errnoOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
  } catch (e) {
    if (e instanceof VfioUserReplyError) return e.errno;
    throw e;
  }
  return 'none';
};

describe('vfio-user server: a hostile client', () => {
  it('refuses commands before VERSION, a second VERSION, and a major it does not speak', async () => {
    const host = new SimHost();
    const server = new VfioUserServer({ model: createModel({ model: 'edu' }), host, tickMs: 0 });
    const [a, b] = InProcessTransport.pair(host);
    server.serve(b);
    const client = new TestClient(a, host);
    expect(await errnoOf(client.request(VFIO_USER_DEVICE_GET_INFO, encodeQuery(VFIO_USER_DEVICE_GET_INFO, 0)))).toBe('EINVAL');
    await client.version();
    expect(await errnoOf(client.version())).toBe('EINVAL');
    client.close();
    // A second client speaking version 1.0 is turned away and the connection closed.
    await server.connection?.closed;
    const [c, d] = InProcessTransport.pair(host);
    server.serve(d);
    const other = new TestClient(c, host);
    expect(await errnoOf(other.request(VFIO_USER_VERSION, encodeVersion({ major: 1, minor: 0, capabilities: DEFAULT_CAPABILITIES })))).toBe('EINVAL');
    expect(await other.closed).toBeUndefined();
    await server.close();
  });

  it('answers malformed commands with errors, closes the fds they carried, and keeps serving', async () => {
    const host = new SimHost();
    const base = host.census();
    const rig = await makeRig('edu', { host });
    const { client } = rig;
    const ram = guestRam(host, 0x10000);
    // DMA_MAP with two fds, with a short payload, and with an empty window.
    expect(await errnoOf(client.request(VFIO_USER_DMA_MAP, encodeDmaMap({ flags: 3, offset: 0n, address: 0n, size: 0x1000n }), [ram.fd, ram.fd]))).toBe('EINVAL');
    expect(await errnoOf(client.request(VFIO_USER_DMA_MAP, new Uint8Array(20), [ram.fd]))).toBe('EINVAL');
    expect(await errnoOf(client.request(VFIO_USER_DMA_MAP, encodeDmaMap({ flags: 3, offset: 0n, address: 0n, size: 0n }), [ram.fd]))).toBe('EINVAL');
    // A file offset past the memfd: the mmap's own errno.
    expect(await errnoOf(client.request(VFIO_USER_DMA_MAP, encodeDmaMap({ flags: 3, offset: 0x10_0000n, address: 0n, size: 0x1000n }), [ram.fd]))).toBe('EINVAL');
    // SET_IRQS with the wrong number of eventfds, and eventfds for DATA_NONE.
    const efd = host.eventfd(0, 0);
    expect(await errnoOf(client.request(VFIO_USER_DEVICE_SET_IRQS, encodeSetIrqs({ flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_MSI_IRQ_INDEX, start: 0, count: 1 }), [efd, efd]))).toBe('EINVAL');
    expect(await errnoOf(client.request(VFIO_USER_DEVICE_SET_IRQS, encodeSetIrqs({ flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_MSI_IRQ_INDEX, start: 0, count: 1 }), [efd]))).toBe('EINVAL');
    // Region accesses outside the region or over the transfer limit; a command only servers send.
    expect(await errnoOf(client.request(VFIO_USER_REGION_READ, encodeRegionAccess({ offset: 0x10_0000n, region: 0, count: 4 })))).toBe('EINVAL');
    expect(await errnoOf(client.request(VFIO_USER_REGION_WRITE, encodeRegionAccess({ offset: 0n, region: 5, count: 1, data: new Uint8Array(1) })))).toBe('EINVAL');
    expect(await errnoOf(client.request(VFIO_USER_REGION_READ, encodeRegionAccess({ offset: 0n, region: 7, count: 2 << 20 })))).toBe('E2BIG');
    expect(await errnoOf(client.request(VFIO_USER_DMA_READ, new Uint8Array(16)))).toBe('EINVAL');
    expect(await errnoOf(client.request(99))).toBe('EINVAL');
    // Features the device does not have.
    expect(await errnoOf(client.request(VFIO_USER_DEVICE_FEATURE, new Uint8Array([8, 0, 0, 0, 1, 0, 1, 0])))).toBe('ENOTTY');
    // The server holds none of the fds it was sent.
    host.close(efd);
    ram.close();
    expect(host.census()).toEqual(base);
    expect(await client.read32(0, 0)).toBe(0x010000ed);
    expect(rig.server.connection!.refused).toBe(12);
    client.close();
    await rig.server.close();
  });

  it('ends the session on a broken header, releasing what the client had set up', async () => {
    const host = new SimHost();
    const base = host.census();
    const rig = await makeRig('edu', { host });
    const ram = guestRam(host, 0x10000);
    await rig.client.request(VFIO_USER_DMA_MAP, encodeDmaMap({ flags: 3, offset: 0n, address: 0n, size: 0x10000n }), [ram.fd]);
    const ending = rig.server.connection!.closed;
    const evil = encodeMessage({ msgId: 9, command: 2, flags: 0, error: 0 });
    new DataView(evil.buffer).setUint32(4, 8, true); // a size smaller than the header
    rig.client.transport.send(evil, [ram.fd]);
    expect(String(await ending)).toMatch(/smaller than the header/);
    ram.close();
    expect(host.census()).toEqual(base);
    await rig.server.close();
  });

  it('in-process pair: duplicates fds as SCM_RIGHTS does, and closes undelivered ones when an end closes', async () => {
    const host = new SimHost();
    const base = host.census();
    const [a, b] = InProcessTransport.pair(host);
    const got: number[][] = [];
    const closed = new Promise<unknown>((resolve) => b.start({ message: (m) => got.push([...m.fds]), closed: resolve }));
    a.start({ message: () => {}, closed: () => {} });
    const efd = host.eventfd(0, 0);
    a.send(encodeMessage({ msgId: 1, command: 8, flags: 0, error: 0 }), [efd]);
    await new Promise((r) => setImmediate(r));
    const [[dup]] = got as [[number]];
    expect(dup).not.toBe(efd);
    host.write(dup, new Uint8Array(new BigUint64Array([1n]).buffer));
    host.close(dup);
    a.send(encodeMessage({ msgId: 2, command: 8, flags: 0, error: 0 }), [efd]);
    b.close();
    expect(await closed).toBeUndefined();
    host.close(efd);
    expect(host.census()).toEqual(base);
  });
});
