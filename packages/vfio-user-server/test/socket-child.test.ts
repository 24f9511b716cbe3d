// The server in a second process over a real Unix socket: file descriptors cross the process
// boundary with SCM_RIGHTS (guest RAM as a memfd, interrupt eventfds, the shared BAR), edu's DMA
// lands in this process's memory, and a client that leaves leaves the server's fd table as it
// was. Needs the built packages (npm test builds first).

import { mkdtempSync, readdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LinuxHost } from '@vmmkit/core';
import {
  EFD_NONBLOCK, MAP_SHARED, MFD_CLOEXEC, PROT_READ, PROT_WRITE, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_PCI_MSI_IRQ_INDEX,
} from '@vmmkit/core/uapi';
import {
  SocketTransport, VFIO_USER_DEVICE_GET_REGION_INFO, VFIO_USER_DEVICE_SET_IRQS, decodeRegionInfo, encodeQuery, encodeSetIrqs,
} from '@vmmkit/core/vfio-user';
import {
  EDU_DMA_CMD, EDU_DMA_COUNT, EDU_DMA_DST, EDU_DMA_IRQ, EDU_DMA_RUN, EDU_DMA_SRC, EDU_DMA_START, EDU_DMA_TO_PCI, EDU_ID,
  NIC_BAR2_SIZE,
} from '@vmmkit/sim';
import { startServer } from './support/server-process.js';
import { TestClient } from './support/test-client.js';
import { enableBusMaster, mapRam } from './support/rig.js';

const host = new LinuxHost();
const fdsOf = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

async function connect(path: string): Promise<TestClient> {
  const client = new TestClient(SocketTransport.connect(path), host);
  await client.version();
  return client;
}

describe('vfio-user server in a second process, over a Unix socket', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vmmkit-vu-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('serves edu: DMA into this process\'s memfd, MSI on this process\'s eventfd, nothing left behind', async () => {
    const path = join(dir, 'edu.sock');
    const child = await startServer(path, 'edu');
    const before = openFds();
    const serverFds = fdsOf(child.pid!);
    const client = await connect(path);
    expect(await client.read32(0, EDU_ID)).toBe(0x010000ed);
    const ram = host.memfdCreate('guest-ram', MFD_CLOEXEC);
    host.ftruncate(ram, 0x10_0000n);
    const view = host.mmap(0x10_0000, PROT_READ | PROT_WRITE, MAP_SHARED, ram, 0n);
    await mapRam(client, ram, 0x100_0000n, 0x10_0000n);
    const msi = host.eventfd(0, EFD_NONBLOCK);
    await client.request(VFIO_USER_DEVICE_SET_IRQS, encodeSetIrqs({ flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_MSI_IRQ_INDEX, start: 0, count: 1 }), [msi]);
    await enableBusMaster(client);
    view.bytes.set([9, 8, 7, 6, 5, 4, 3, 2], 0x100);
    const dma = async (src: bigint, dst: bigint, cmd: number): Promise<void> => {
      await client.write64(0, EDU_DMA_SRC, src);
      await client.write64(0, EDU_DMA_DST, dst);
      await client.write64(0, EDU_DMA_COUNT, 8n);
      await client.write64(0, EDU_DMA_CMD, BigInt(cmd));
      while (Number(await client.read32(0, EDU_DMA_CMD)) & EDU_DMA_RUN) { /* edu's timer or this poll completes it */ }
    };
    await dma(0x100_0100n, BigInt(EDU_DMA_START), EDU_DMA_RUN);
    await dma(BigInt(EDU_DMA_START), 0x100_0800n, EDU_DMA_RUN | EDU_DMA_TO_PCI | EDU_DMA_IRQ);
    expect([...view.bytes.subarray(0x800, 0x808)]).toEqual([9, 8, 7, 6, 5, 4, 3, 2]);
    const count = new Uint8Array(8);
    host.read(msi, count);
    expect(new DataView(count.buffer).getBigUint64(0, true)).toBe(1n);
    expect(fdsOf(child.pid!)).toBeGreaterThan(serverFds); // it holds our eventfd (and the RAM mapping's file)
    client.close();
    await client.closed;
    view.unmap();
    host.close(ram);
    host.close(msi);
    // The server released the eventfd and the window's file: its fd table is as before.
    for (let i = 0; i < 50 && fdsOf(child.pid!) !== serverFds; i++) await new Promise((r) => setTimeout(r, 20));
    expect(fdsOf(child.pid!)).toBe(serverFds);
    expect(openFds()).toBe(before);
    // The next client is served.
    const again = await connect(path);
    expect(await again.read32(0, EDU_ID)).toBe(0x010000ed);
    again.close();
    await again.closed;
    child.kill('SIGTERM');
    expect(await new Promise((r) => child.once('exit', r))).toBe(0);
    expect(existsSync(path)).toBe(false);
  }, 30_000);

  it('shares the nic\'s BAR2 memfd across the processes', async () => {
    const path = join(dir, 'nic.sock');
    const child = await startServer(path, 'nic');
    const client = await connect(path);
    const reply = await client.request(VFIO_USER_DEVICE_GET_REGION_INFO, encodeQuery(VFIO_USER_DEVICE_GET_REGION_INFO, 2, 256));
    const info = decodeRegionInfo(reply.payload);
    const bar = host.mmap(NIC_BAR2_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, reply.fds[0]!, info.mmapOffset);
    bar.view(0x40, 4).set([1, 2, 3, 4]);
    expect([...await client.read(2, 0x40, 4)]).toEqual([1, 2, 3, 4]);
    bar.unmap();
    host.close(reply.fds[0]!);
    client.close();
    await client.closed;
    child.kill('SIGTERM');
    expect(await new Promise((r) => child.once('exit', r))).toBe(0);
  }, 30_000);
});

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}
