// The server with the simulated NIC: BAR2 shared through a memfd (sparse mmap areas), receive
// traffic DMA-written into guest RAM and caught by DMA logging, and a live migration of the
// device state over MIG_DATA_READ / MIG_DATA_WRITE from one server to another.

import { afterEach, describe, expect, it } from 'vitest';
import {
  MAP_SHARED, PROT_READ, PROT_WRITE, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_MIGRATION, VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_STATE_PRE_COPY,
  VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_STOP_COPY,
  VFIO_MIGRATION_PRE_COPY, VFIO_MIGRATION_STOP_COPY, VFIO_REGION_INFO_FLAG_MMAP,
} from '@vmmkit/core/uapi';
import {
  VFIO_USER_DEVICE_FEATURE, VFIO_USER_DEVICE_GET_REGION_INFO, VFIO_USER_MIG_DATA_READ, VFIO_USER_MIG_DATA_WRITE,
  decodeMigData, decodeMigState, decodeRegionInfo, encodeFeature, encodeLoggingReport, encodeLoggingStart, encodeMigData,
  encodeMigDataRead, encodeMigState, encodeQuery,
} from '@vmmkit/core/vfio-user';
import {
  NIC_BAR2_SIZE, NIC_CTRL, NIC_CTRL_RX_EN, NIC_RATE_PPS, NIC_RX_HEAD, NIC_RX_PKT_SIZE, NIC_RX_RING_BASE, NIC_RX_RING_SIZE,
  SimHost,
} from '@vmmkit/sim';
import type { TestClient } from './support/test-client.js';
import { enableBusMaster, guestRam, makeRig, mapRam, type Rig } from './support/rig.js';

const feature = async (client: TestClient, flags: number, data?: Uint8Array): Promise<Uint8Array> =>
  (await client.request(VFIO_USER_DEVICE_FEATURE, encodeFeature(flags, data, 8 + (data?.byteLength ?? 0) + 4096))).payload.subarray(8);

const setState = async (client: TestClient, state: number): Promise<number> =>
  decodeMigState(await feature(client, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, encodeMigState(state)));

/** Read the migration stream until a short read says it is drained. */
async function drain(client: TestClient): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for (;;) {
    const reply = await client.request(VFIO_USER_MIG_DATA_READ, encodeMigDataRead(65536));
    const data = decodeMigData(VFIO_USER_MIG_DATA_READ, reply.payload, [], 65536);
    chunks.push(data.slice());
    if (data.byteLength < 65536) return chunks;
  }
}

/** Start the NIC receiving into a ring at IOVA `ring`. */
async function startTraffic(client: TestClient, ring: bigint): Promise<void> {
  await enableBusMaster(client);
  await client.write64(0, NIC_RX_RING_BASE, ring);
  await client.write32(0, NIC_RX_RING_SIZE, 64);
  await client.write32(0, NIC_RX_PKT_SIZE, 256);
  await client.write32(0, NIC_RATE_PPS, 10_000);
  await client.write32(0, NIC_CTRL, NIC_CTRL_RX_EN);
}

describe('vfio-user server: nic', () => {
  const rigs: Rig[] = [];
  afterEach(async () => {
    for (const r of rigs.splice(0)) {
      r.client.close();
      await r.server.close();
    }
  });

  it('shares BAR2 through a memfd with its sparse mmap areas: the client\'s stores reach the model', async () => {
    const rig = await makeRig('nic');
    rigs.push(rig);
    const reply = await rig.client.request(VFIO_USER_DEVICE_GET_REGION_INFO, encodeQuery(VFIO_USER_DEVICE_GET_REGION_INFO, 2, 256));
    const info = decodeRegionInfo(reply.payload);
    expect(info.flags & VFIO_REGION_INFO_FLAG_MMAP).toBeTruthy();
    expect(info.sparse).toEqual([{ offset: 0n, size: 0x4000n }, { offset: 0x5000n, size: 0xb000n }]);
    expect(reply.fds).toHaveLength(1);
    const bar = rig.host.mmap(NIC_BAR2_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, reply.fds[0]!, info.mmapOffset);
    bar.view(0x10, 4).set([0xde, 0xad, 0xbe, 0xef]);
    expect([...await rig.client.read(2, 0x10, 4)]).toEqual([0xde, 0xad, 0xbe, 0xef]);
    await rig.client.write32(2, 0x20, 0x0102_0304);
    expect([...bar.view(0x20, 4)]).toEqual([4, 3, 2, 1]);
    bar.unmap();
    rig.host.close(reply.fds[0]!);
  });

  it('logs the pages the NIC DMA-writes and reports them once', async () => {
    const rig = await makeRig('nic');
    rigs.push(rig);
    const { client } = rig;
    const ram = guestRam(rig.host, 0x10_0000);
    await mapRam(client, ram.fd, 0n, 0x10_0000n);
    const started = await feature(client, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
      encodeLoggingStart({ pageSize: 4096n, ranges: [{ iova: 0n, length: 0x10_0000n }] }));
    expect(new DataView(started.buffer, started.byteOffset).getBigUint64(0, true)).toBe(4096n);
    await startTraffic(client, 0x4_0000n);
    rig.model.advance!(2); // 20 packets of 256 bytes: slots 0..19, pages 0x40..0x41
    const head = await client.read32(0, NIC_RX_HEAD);
    expect(head).toBe(20);
    const report = async (): Promise<number[]> => {
      const data = await feature(client, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
        encodeLoggingReport({ iova: 0n, length: 0x10_0000n, pageSize: 4096n }));
      const bits = data.subarray(24);
      const pages: number[] = [];
      bits.forEach((byte, i) => { for (let b = 0; b < 8; b++) if (byte & (1 << b)) pages.push(i * 8 + b); });
      return pages;
    };
    expect(await report()).toEqual([0x40, 0x41]);
    expect(await report()).toEqual([]);
    await feature(client, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP);
    await expect(report()).rejects.toMatchObject({ errno: 'EINVAL' });
    ram.close();
  });

  it('migrates the device state with PRE_COPY and STOP_COPY to a second server', async () => {
    const host = new SimHost();
    const src = await makeRig('nic', { host });
    const dst = await makeRig('nic', { host });
    rigs.push(src, dst);
    const flags = await feature(src.client, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION);
    expect(Number(new DataView(flags.buffer, flags.byteOffset).getBigUint64(0, true))).toBe(VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY);
    await feature(src.client, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE);
    const ram = guestRam(host, 0x10_0000);
    await mapRam(src.client, ram.fd, 0n, 0x10_0000n);
    await startTraffic(src.client, 0x4_0000n);
    src.model.advance!(1);
    expect(await setState(src.client, VFIO_DEVICE_STATE_PRE_COPY)).toBe(VFIO_DEVICE_STATE_PRE_COPY);
    const initial = await drain(src.client);
    src.model.advance!(1); // the device runs on during precopy
    const dirty = await drain(src.client);
    expect(await setState(src.client, VFIO_DEVICE_STATE_STOP_COPY)).toBe(VFIO_DEVICE_STATE_STOP_COPY);
    const final = await drain(src.client);
    // A stopped device does not move.
    src.model.advance!(5);
    expect(await setState(dst.client, VFIO_DEVICE_STATE_RESUMING)).toBe(VFIO_DEVICE_STATE_RESUMING);
    for (const chunk of [...initial, ...dirty, ...final]) {
      for (let at = 0; at < chunk.byteLength; at += 60_000) {
        await dst.client.request(VFIO_USER_MIG_DATA_WRITE, encodeMigData(chunk.subarray(at, at + 60_000)));
      }
    }
    expect(await setState(dst.client, VFIO_DEVICE_STATE_STOP)).toBe(VFIO_DEVICE_STATE_STOP);
    expect(await setState(dst.client, VFIO_DEVICE_STATE_RUNNING)).toBe(VFIO_DEVICE_STATE_RUNNING);
    expect(Buffer.from(dst.model.migration!.save()).equals(Buffer.from(src.model.migration!.save()))).toBe(true);
    expect(await dst.client.read32(0, NIC_RX_HEAD)).toBe(20);
    // STOP_COPY cannot go back to PRE_COPY.
    await expect(setState(src.client, VFIO_DEVICE_STATE_PRE_COPY)).rejects.toMatchObject({ errno: 'EINVAL' });
    ram.close();
  });

  it('answers MIG_DATA_SIZE with what STOP_COPY would stream (GET only), and ENOTTY for a model without migration', async () => {
    const host = new SimHost();
    const nic = await makeRig('nic', { host });
    const edu = await makeRig('edu', { host });
    rigs.push(nic, edu);
    const size = await feature(nic.client, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, new Uint8Array(8));
    const bytes = new DataView(size.buffer, size.byteOffset).getBigUint64(0, true);
    await setState(nic.client, VFIO_DEVICE_STATE_STOP);
    await setState(nic.client, VFIO_DEVICE_STATE_STOP_COPY);
    expect(BigInt((await drain(nic.client)).reduce((n, c) => n + c.byteLength, 0))).toBe(bytes);
    await expect(feature(nic.client, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, new Uint8Array(8))).rejects.toMatchObject({ errno: 'EINVAL' });
    await expect(feature(edu.client, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, new Uint8Array(8))).rejects.toMatchObject({ errno: 'ENOTTY' });
  });

  it('refuses a corrupt stream at RESUMING -> STOP and leaves the device in ERROR until reset', async () => {
    const dst = await makeRig('nic');
    rigs.push(dst);
    await setState(dst.client, VFIO_DEVICE_STATE_RESUMING);
    await expect(dst.client.request(VFIO_USER_MIG_DATA_WRITE, encodeMigData(new Uint8Array(64).fill(7)))).rejects.toMatchObject({ errno: 'EINVAL' });
    await expect(setState(dst.client, VFIO_DEVICE_STATE_STOP)).rejects.toMatchObject({ errno: 'EINVAL' });
    const state = decodeMigState(await feature(dst.client, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE));
    expect(state).toBe(0);
    await dst.client.request(13);
    expect(decodeMigState(await feature(dst.client, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE))).toBe(VFIO_DEVICE_STATE_RUNNING);
  });
});
