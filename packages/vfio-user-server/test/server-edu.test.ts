// The server with QEMU's edu over an in-process pair on SimHost: what QEMU's client does first
// (version, DMA maps, device and region info, config space, BAR sizing), register access,
// interrupts on eventfds, DMA through the mapped file and through messages, reset, and a client
// that leaves with everything released.

import { afterEach, describe, expect, it } from 'vitest';
import {
  PCI_COMMAND, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
} from '@vmmkit/core/uapi';
import {
  VFIO_USER_DEVICE_GET_INFO, VFIO_USER_DEVICE_GET_IRQ_INFO, VFIO_USER_DEVICE_GET_REGION_INFO, VFIO_USER_DEVICE_RESET,
  VFIO_USER_DEVICE_SET_IRQS, VFIO_USER_DMA_MAP, VFIO_USER_DMA_UNMAP, VFIO_USER_DMA_WRITE, VFIO_USER_VERSION, VfioUserReplyError,
  InProcessTransport,
  decodeDeviceInfo, decodeIrqInfo, decodeRegionInfo, encodeDmaMap, encodeDmaUnmap, encodeQuery, encodeSetIrqs,
} from '@vmmkit/core/vfio-user';
import {
  EDU_DMA_CMD, EDU_DMA_COUNT, EDU_DMA_DST, EDU_DMA_IRQ, EDU_DMA_RUN, EDU_DMA_SRC, EDU_DMA_START, EDU_DMA_TO_PCI,
  EDU_FACTORIAL, EDU_ID, EDU_IRQ_ACK, EDU_IRQ_RAISE, EDU_LIVENESS, SimHost, createModel,
} from '@vmmkit/sim';
import { VfioUserServer } from '@vmmkit/vfio-user-server';
import { TestClient } from './support/test-client.js';
import { enableBusMaster, guestRam, makeRig, mapRam, type Rig } from './support/rig.js';

const count = (host: SimHost, fd: number): bigint => {
  const b = new Uint8Array(8);
  try {
    host.read(fd, b);
  } catch {
    return 0n;
  }
  return new DataView(b.buffer).getBigUint64(0, true);
};

describe('vfio-user server: edu', () => {
  let rig: Rig | undefined;
  afterEach(async () => {
    rig?.client.close();
    await rig?.server.close();
    rig = undefined;
  });

  it('answers QEMU 11.1\'s VERSION with what its proxy.c accepts', async () => {
    const host = new SimHost();
    const server = new VfioUserServer({ model: createModel({ model: 'nic' }), host, tickMs: 0 });
    const [a, b] = InProcessTransport.pair(host);
    server.serve(b);
    const client = new TestClient(a, host);
    // QEMU's request, byte for byte as caps_json() builds it.
    const json = '{"capabilities":{"migration":{"pgsize":4096,"max_bitmap_size":268435456},"max_msg_fds":16,"max_data_xfer_size":1048576,"pgsizes":4096,"max_dma_maps":65535,"write_multiple":true}}';
    const reply = await client.request(VFIO_USER_VERSION, new Uint8Array([0, 0, 0, 0, ...new TextEncoder().encode(json), 0]));
    const p = reply.payload;
    expect([p[0], p[1], p[2], p[3]]).toEqual([0, 0, 0, 0]); // major 0, minor 0: QEMU refuses a minor above its own
    expect(p[p.byteLength - 1]).toBe(0); // NUL-terminated, or QEMU calls it corrupt
    const caps = JSON.parse(new TextDecoder().decode(p.subarray(4, p.byteLength - 1))).capabilities;
    expect(caps.max_msg_fds).toBeLessThanOrEqual(16);
    expect(caps.max_dma_maps).toBeLessThanOrEqual(65535);
    expect(caps.max_data_xfer_size).toBeLessThanOrEqual(1048576);
    expect(caps.pgsizes % 4096).toBe(0);
    expect(caps.migration.max_bitmap_size).toBeLessThanOrEqual(268435456);
    expect(caps.migration.pgsize % 4096).toBe(0);
    expect(caps.write_multiple).toBe(true);
    client.close();
    await server.close();
  });

  it('describes the device, its regions, IRQs and config space as QEMU asks for them', async () => {
    rig = await makeRig('edu');
    const { client } = rig;
    const info = decodeDeviceInfo((await client.request(VFIO_USER_DEVICE_GET_INFO, encodeQuery(VFIO_USER_DEVICE_GET_INFO, 0))).payload);
    expect(info).toEqual({ flags: 3, numRegions: 9, numIrqs: 5 });
    const bar0 = decodeRegionInfo((await client.request(VFIO_USER_DEVICE_GET_REGION_INFO, encodeQuery(VFIO_USER_DEVICE_GET_REGION_INFO, 0))).payload);
    expect(bar0).toMatchObject({ index: 0, size: 0x10_0000n, flags: 3 });
    const cfg = decodeRegionInfo((await client.request(VFIO_USER_DEVICE_GET_REGION_INFO, encodeQuery(VFIO_USER_DEVICE_GET_REGION_INFO, 7))).payload);
    expect(cfg.size).toBe(256n);
    const rom = decodeRegionInfo((await client.request(VFIO_USER_DEVICE_GET_REGION_INFO, encodeQuery(VFIO_USER_DEVICE_GET_REGION_INFO, 6))).payload);
    expect(rom.size).toBe(0n);
    await expect(client.request(VFIO_USER_DEVICE_GET_REGION_INFO, encodeQuery(VFIO_USER_DEVICE_GET_REGION_INFO, 9))).rejects.toMatchObject({ errno: 'EINVAL' });
    const msi = decodeIrqInfo((await client.request(VFIO_USER_DEVICE_GET_IRQ_INFO, encodeQuery(VFIO_USER_DEVICE_GET_IRQ_INFO, VFIO_PCI_MSI_IRQ_INDEX))).payload);
    expect(msi.count).toBe(1);
    const msix = decodeIrqInfo((await client.request(VFIO_USER_DEVICE_GET_IRQ_INFO, encodeQuery(VFIO_USER_DEVICE_GET_IRQ_INFO, VFIO_PCI_MSIX_IRQ_INDEX))).payload);
    expect(msix.count).toBe(0);
    // Vendor and device: QEMU's edu.
    expect(await client.read32(VFIO_PCI_CONFIG_REGION_INDEX, 0)).toBe(0x11e8_1234);
    // Read-only IDs stay; BAR0 sizes as 1 MiB of 32-bit memory.
    await client.write32(VFIO_PCI_CONFIG_REGION_INDEX, 0, 0xffff_ffff);
    expect(await client.read32(VFIO_PCI_CONFIG_REGION_INDEX, 0)).toBe(0x11e8_1234);
    await client.write32(VFIO_PCI_CONFIG_REGION_INDEX, 0x10, 0xffff_ffff);
    expect(await client.read32(VFIO_PCI_CONFIG_REGION_INDEX, 0x10)).toBe(0xfff0_0000);
    await client.write32(VFIO_PCI_CONFIG_REGION_INDEX, 0x14, 0xffff_ffff);
    expect(await client.read32(VFIO_PCI_CONFIG_REGION_INDEX, 0x14)).toBe(0);
  });

  it('answers edu\'s registers and interrupts on the eventfds the client sent', async () => {
    rig = await makeRig('edu');
    const { client, host } = rig;
    expect(await client.read32(0, EDU_ID)).toBe(0x010000ed);
    await client.write32(0, EDU_LIVENESS, 0x1234_5678);
    expect(await client.read32(0, EDU_LIVENESS)).toBe(~0x1234_5678 >>> 0);
    await client.write32(0, EDU_FACTORIAL, 5);
    expect(await client.read32(0, EDU_FACTORIAL)).toBe(120);
    // INTx with its automask: one signal until the client unmasks.
    const intx = host.eventfd(0, 0o4000);
    await client.request(VFIO_USER_DEVICE_SET_IRQS, encodeSetIrqs({ flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_INTX_IRQ_INDEX, start: 0, count: 1 }), [intx]);
    await client.write32(0, EDU_IRQ_RAISE, 1);
    await client.write32(0, EDU_IRQ_RAISE, 1);
    expect(count(host, intx)).toBe(1n);
    await client.request(VFIO_USER_DEVICE_SET_IRQS, encodeSetIrqs({ flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, index: VFIO_PCI_INTX_IRQ_INDEX, start: 0, count: 1 }));
    // Still asserted: the unmask delivers it again.
    expect(count(host, intx)).toBe(1n);
    await client.write32(0, EDU_IRQ_ACK, 1);
    // MSI: enabling it sets the capability's enable bit, so edu signals MSI.
    await client.request(VFIO_USER_DEVICE_SET_IRQS, encodeSetIrqs({ flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_INTX_IRQ_INDEX, start: 0, count: 0 }));
    const msi = host.eventfd(0, 0o4000);
    await client.request(VFIO_USER_DEVICE_SET_IRQS, encodeSetIrqs({ flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_MSI_IRQ_INDEX, start: 0, count: 1 }), [msi]);
    await client.write32(0, EDU_IRQ_RAISE, 1);
    expect(count(host, msi)).toBe(1n);
    expect(count(host, intx)).toBe(0n);
    // Enabling MSI-X (edu has none) is refused; the eventfd sent with it is not kept.
    const stray = host.eventfd(0, 0);
    await expect(client.request(VFIO_USER_DEVICE_SET_IRQS, encodeSetIrqs({ flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_MSIX_IRQ_INDEX, start: 0, count: 1 }), [stray]))
      .rejects.toBeInstanceOf(VfioUserReplyError);
    for (const fd of [intx, msi, stray]) host.close(fd);
  });

  it('moves edu DMA through the client\'s mapped memfd, and through DMA_WRITE messages where a window has no file', async () => {
    rig = await makeRig('edu');
    const { client, host, server } = rig;
    const ram = guestRam(host, 0x10_0000);
    await mapRam(client, ram.fd, 0n, 0x8_0000n);
    // A window without a file, as QEMU maps the BIOS ROM range.
    await client.request(VFIO_USER_DMA_MAP, encodeDmaMap({ flags: 3, offset: 0n, address: 0xc_0000n, size: 0x4_0000n }));
    ram.mapping.view(0x1000, 4).set([1, 2, 3, 4]);
    const run = async (src: bigint, dst: bigint, cmd: number): Promise<void> => {
      await client.write64(0, EDU_DMA_SRC, src);
      await client.write64(0, EDU_DMA_DST, dst);
      await client.write64(0, EDU_DMA_COUNT, 4n);
      await client.write64(0, EDU_DMA_CMD, BigInt(cmd));
      // A poll of the command register stands for edu's 100 ms timer.
      await client.read32(0, EDU_DMA_CMD);
    };
    // Bus mastering off: the DMA faults, as on hardware.
    await run(0x1000n, BigInt(EDU_DMA_START), EDU_DMA_RUN);
    expect(server.faults.at(-1)?.reason).toMatch(/bus mastering is off/);
    await enableBusMaster(client);
    await run(0x1000n, BigInt(EDU_DMA_START), EDU_DMA_RUN | EDU_DMA_IRQ);
    await run(BigInt(EDU_DMA_START), 0x2000n, EDU_DMA_RUN | EDU_DMA_TO_PCI);
    expect([...ram.mapping.view(0x2000, 4)]).toEqual([1, 2, 3, 4]);
    // Into the window without a file: a posted DMA_WRITE the client answers.
    client.messageRam = { base: 0xc_0000n, bytes: new Uint8Array(0x4_0000) };
    await run(BigInt(EDU_DMA_START), 0xc_0010n, EDU_DMA_RUN | EDU_DMA_TO_PCI);
    await new Promise((r) => setImmediate(r));
    expect(client.dmaMessages).toEqual([{ command: VFIO_USER_DMA_WRITE, address: 0xc_0010n, count: 4n }]);
    expect([...client.messageRam.bytes.subarray(0x10, 0x14)]).toEqual([1, 2, 3, 4]);
    // Overlapping maps are EEXIST; unmapping what is not mapped is ENOENT; after an unmap, DMA faults.
    await expect(mapRam(client, ram.fd, 0x4_0000n, 0x1000n)).rejects.toMatchObject({ errno: 'EEXIST' });
    await expect(client.request(VFIO_USER_DMA_UNMAP, encodeDmaUnmap({ flags: 0, address: 0x1000n, size: 0x1000n }))).rejects.toMatchObject({ errno: 'ENOENT' });
    await client.request(VFIO_USER_DMA_UNMAP, encodeDmaUnmap({ flags: 0, address: 0n, size: 0x8_0000n }));
    await run(BigInt(EDU_DMA_START), 0x3000n, EDU_DMA_RUN | EDU_DMA_TO_PCI);
    expect(server.faults.at(-1)?.reason).toMatch(/no DMA window/);
    expect([...ram.mapping.view(0x3000, 4)]).toEqual([0, 0, 0, 0]);
    ram.close();
  });

  it('resets the device: registers and command back to power-on', async () => {
    rig = await makeRig('edu');
    const { client } = rig;
    await enableBusMaster(client);
    await client.write32(0, EDU_LIVENESS, 1);
    await client.request(VFIO_USER_DEVICE_RESET);
    expect(await client.read32(0, EDU_LIVENESS)).toBe(0);
    const cmd = await client.read(VFIO_PCI_CONFIG_REGION_INDEX, PCI_COMMAND, 2);
    expect(cmd[0]! & 0x4).toBe(0);
  });

  it('releases every fd and mapping of a client that goes away, and serves the next one', async () => {
    const host = new SimHost();
    const base = host.census();
    rig = await makeRig('edu', { host });
    const ram = guestRam(host, 0x10000);
    await mapRam(rig.client, ram.fd, 0n, 0x10000n);
    const efd = host.eventfd(0, 0);
    await rig.client.request(VFIO_USER_DEVICE_SET_IRQS, encodeSetIrqs({ flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index: VFIO_PCI_MSI_IRQ_INDEX, start: 0, count: 1 }), [efd]);
    ram.close();
    host.close(efd);
    expect(host.census()).not.toEqual(base); // the server holds a mapping and an eventfd
    const gone = rig.server.connection!.closed;
    rig.client.close();
    await gone;
    expect(host.census()).toEqual(base);
    expect(rig.server.connection).toBeUndefined();
  });
});
