// The vfio-user client against @vmmkit/vfio-user-server serving edu over an in-process pair:
// VERSION, the container's DMA_MAP of memfd guest RAM at attach, config space, BAR registers,
// edu DMA into guest RAM through the mapped file, an interrupt on an eventfd, reset, and detach
// leaving the host as it was.

import { afterEach, describe, expect, it } from 'vitest';
import {
  MAP_SHARED, PCI_COMMAND, PCI_VENDOR_ID, PROT_READ, PROT_WRITE, VFIO_REGION_INFO_FLAG_MMAP, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_BAR0_REGION_INDEX,
  VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSI_IRQ_INDEX,
} from '@vmmkit/core/uapi';
import {
  EDU_DMA_IRQ, EDU_DMA_RUN, EDU_DMA_START, EDU_DMA_TO_PCI, EDU_ID,
  EDU_IRQ_RAISE, EDU_LIVENESS, NIC_BAR2_SIZE, SimHost,
} from '@vmmkit/sim';
import { VFIO_USER_REGION_WRITE, encodeRegionAccess } from '@vmmkit/core/vfio-user';
import { CLIENT_CAPABILITIES, VFIO_IOMMU_USER, VfioUserContainer, VfioUserDevice } from '@vmmkit/backend-vfio-user';
import { VfioError } from '@vmmkit/core';
import { makeClientRig, type ClientRig } from './support/client-rig.js';
import { le64, runEduDma } from './support/edu-io.js';

const le32 = (v: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
};
const u32 = (b: Uint8Array): number => new DataView(b.buffer, b.byteOffset).getUint32(0, true);
const eventCount = (host: SimHost, fd: number): bigint => {
  const b = new Uint8Array(8);
  try {
    host.read(fd, b);
  } catch {
    return 0n; // EAGAIN: nothing signalled
  }
  return new DataView(b.buffer).getBigUint64(0, true);
};

describe('vfio-user client: edu over an in-process pair', () => {
  let rig: ClientRig | undefined;
  afterEach(async () => {
    await rig?.close();
    rig = undefined;
  });

  it('negotiates the version and maps guest RAM with its memfd when the device attaches', async () => {
    rig = await makeClientRig();
    const { backend, device, space, server, proxy } = rig;
    const container = await backend.attachDevice('vu0', device, space);
    expect(container).toBeInstanceOf(VfioUserContainer);
    expect(container.backend.kind).toBe(VFIO_IOMMU_USER);
    expect(proxy.capabilities.maxMsgFds).toBeGreaterThanOrEqual(1);
    expect(container.pgsizes & 0x1000n).toBe(0x1000n);
    expect(device.container).toBe(container);
    expect(device.info).toEqual({ flags: 3, numRegions: 9, numIrqs: 5 });
    // The server holds one window over the whole 1 MiB, backed by the file it was handed.
    const session = server.connection!;
    expect(session.dma.count).toBe(1);
  });

  it('reads config space, does BAR register I/O, moves edu DMA through guest RAM and signals an eventfd', async () => {
    rig = await makeClientRig();
    const { backend, device, space, memory, host, server } = rig;
    await backend.attachDevice('vu0', device, space);
    const io = device.io;
    const ids = u32(await io.regionRead(VFIO_PCI_CONFIG_REGION_INDEX, BigInt(PCI_VENDOR_ID), 4));
    expect(ids).toBe(0x11e8_1234); // QEMU's edu: vendor 0x1234, device 0x11e8
    const bar0 = await io.regionInfo(VFIO_PCI_BAR0_REGION_INDEX);
    expect(bar0).toMatchObject({ index: 0, size: 0x10_0000n });
    expect(u32(await io.regionRead(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_ID), 4))).toBe(0x010000ed);
    await io.regionWrite(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_LIVENESS), le32(0x1234_5678));
    expect(u32(await io.regionRead(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_LIVENESS), 4))).toBe(~0x1234_5678 >>> 0);

    // Memory decoding and bus mastering on, MSI on an eventfd.
    await io.regionWrite(VFIO_PCI_CONFIG_REGION_INDEX, BigInt(PCI_COMMAND), new Uint8Array([0x06, 0x00]));
    expect(io.busMaster).toBe(true);
    const msi = host.eventfd(0, 0o4000);
    await io.setIrqs({ flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_MSI_IRQ_INDEX, start: 0, count: 1, eventfds: [msi] });

    // edu copies 4 bytes from guest RAM into its buffer and back to another place in guest RAM.
    memory.write(0x1000n, new Uint8Array([9, 8, 7, 6]));
    const run = async (src: bigint, dst: bigint, cmd: number): Promise<void> => {
      await runEduDma(io, src, dst, cmd);
    };
    await run(0x1000n, BigInt(EDU_DMA_START), EDU_DMA_RUN);
    await run(BigInt(EDU_DMA_START), 0x2000n, EDU_DMA_RUN | EDU_DMA_TO_PCI | EDU_DMA_IRQ);
    expect([...memory.read(0x2000n, 4)]).toEqual([9, 8, 7, 6]);
    expect(server.faults).toEqual([]);
    expect(eventCount(host, msi)).toBe(1n);
    // A raised interrupt signals again.
    await io.regionWrite(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_IRQ_RAISE), le32(1));
    expect(eventCount(host, msi)).toBe(1n);
    host.close(msi);
  });

  it('reads region info with its file: the nic\'s BAR2 is shared memory the client can map', async () => {
    const host = new SimHost();
    const base = host.census();
    rig = await makeClientRig({ host, model: 'nic' });
    const { backend, device, space } = rig;
    await backend.attachDevice('vu0', device, space);
    const bar2 = await device.io.regionInfo(2);
    expect(bar2.size).toBe(BigInt(NIC_BAR2_SIZE));
    expect(bar2.flags & VFIO_REGION_INFO_FLAG_MMAP).toBe(VFIO_REGION_INFO_FLAG_MMAP);
    expect(bar2.mmapFd).toBeDefined();
    const mapping = host.mmap(NIC_BAR2_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, bar2.mmapFd!, bar2.offset);
    mapping.view(0x40, 4).set([1, 2, 3, 4]);
    expect([...await device.io.regionRead(2, 0x40n, 4)]).toEqual([1, 2, 3, 4]);
    mapping.unmap();
    // A region without a file comes without one; the files are the I/O's, closed at detach (census below).
    expect((await device.io.regionInfo(VFIO_PCI_CONFIG_REGION_INDEX)).mmapFd).toBeUndefined();
    await rig.close();
    rig = undefined;
    expect(host.census()).toEqual(base);
  });

  it('posts a register write that wants no reply; the next read sees it', async () => {
    rig = await makeClientRig();
    const { backend, device, space, proxy } = rig;
    await backend.attachDevice('vu0', device, space);
    proxy.post(VFIO_USER_REGION_WRITE, encodeRegionAccess({ offset: BigInt(EDU_LIVENESS), region: VFIO_PCI_BAR0_REGION_INDEX, count: 4, data: le32(0xf0f0_0000) }));
    expect(proxy.pendingCount).toBe(0);
    expect(u32(await device.io.regionRead(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_LIVENESS), 4))).toBe(~0xf0f0_0000 >>> 0);
  });

  it('resets the device: registers back to power-on and bus mastering off', async () => {
    rig = await makeClientRig();
    const { backend, device, space } = rig;
    await backend.attachDevice('vu0', device, space);
    const io = device.io;
    await io.regionWrite(VFIO_PCI_CONFIG_REGION_INDEX, BigInt(PCI_COMMAND), new Uint8Array([0x06, 0x00]));
    await io.regionWrite(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_LIVENESS), le32(1));
    await io.reset();
    expect(io.busMaster).toBe(false);
    expect(u32(await io.regionRead(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_LIVENESS), 4))).toBe(0);
    const cmd = await io.regionRead(VFIO_PCI_CONFIG_REGION_INDEX, BigInt(PCI_COMMAND), 2);
    expect(cmd[0]! & 0x4).toBe(0);
  });

  it('detaches: DMA_UNMAP at the server, the container closed, the host as before', async () => {
    const host = new SimHost();
    const base = host.census();
    rig = await makeClientRig({ host });
    const { backend, device, space, server } = rig;
    const container = await backend.attachDevice('vu0', device, space);
    await backend.detachDevice(device);
    expect(server.connection!.dma.count).toBe(0);
    expect(device.container).toBeUndefined();
    expect(space.containers).not.toContain(container);
    await rig.close();
    rig = undefined;
    expect(host.census()).toEqual(base);
  });

  it('keeps to the server\'s max_dma_maps: a map past it is refused with ENOSPC before it is sent, and fits again after an unmap', async () => {
    rig = await makeClientRig({ proxy: { capabilities: { ...CLIENT_CAPABILITIES, maxDmaMaps: 2 } } });
    const { backend, device, space, server, memory } = rig;
    const container = await backend.attachDevice('vu0', device, space);
    expect(container.dmaMaxMappings).toBe(2);
    const ram = memory.blocks[0]!;
    await container.dmaMap(0x800_0000n, 0x1000n, ram.hva, false); // the second window
    const e = await container.dmaMap(0x800_1000n, 0x1000n, ram.hva + 0x1000n, false).then(() => undefined, (err: unknown) => err);
    expect(e).toBeInstanceOf(VfioError);
    expect(e).toMatchObject({ device: 'vu0', errno: 'ENOSPC' });
    expect(String(e)).toContain('max_dma_maps');
    expect(server.connection!.dma.count).toBe(2); // never sent
    await container.dmaUnmap(0x800_0000n, 0x1000n);
    await container.dmaMap(0x800_1000n, 0x1000n, ram.hva + 0x1000n, false);
    expect(server.connection!.dma.count).toBe(2);
  });

  it('posts a write the caller allows to be posted (never to config space), unless posted writes are off', async () => {
    rig = await makeClientRig();
    const { backend, device, space, proxy } = rig;
    await backend.attachDevice('vu0', device, space);
    const io = device.io;
    const write = io.regionWrite(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_LIVENESS), le32(0x0f0f_0000), { posted: true });
    expect(proxy.pendingCount).toBe(0); // sent with NO_REPLY: nothing waits
    await write;
    expect(u32(await io.regionRead(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_LIVENESS), 4))).toBe(~0x0f0f_0000 >>> 0);
    const config = io.regionWrite(VFIO_PCI_CONFIG_REGION_INDEX, BigInt(PCI_COMMAND), new Uint8Array([0x02, 0]), { posted: true });
    expect(proxy.pendingCount).toBe(1); // config space waits for its reply
    await config;
    await rig.close();

    rig = await makeClientRig();
    const unposted = new VfioUserDevice('vu0', rig.proxy, rig.host, { postedWrites: false });
    await rig.backend.attachDevice('vu0', unposted, rig.space);
    const waited = unposted.io.regionWrite(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_LIVENESS), le32(1), { posted: true });
    expect(rig.proxy.pendingCount).toBe(1);
    await waited;
    await rig.backend.detachDevice(unposted);
  });
});
