// Migration of a vfio-user device below the VM: VfioMigration and device DMA logging reach a nic
// served by @vmmkit/vfio-user-server only through the device's I/O (DEVICE_FEATURE,
// MIG_DATA_READ / MIG_DATA_WRITE), within the negotiated migration capability; a server without
// migration gives a blocker naming the device; a server that dies mid-migration gives a typed
// error naming the device and leaves nothing behind.

import { afterEach, describe, expect, it } from 'vitest';
import { VfioError, vfioMigrationVerdict, type VmmEventBus } from '@vmmkit/core';
import {
  VFIO_DEVICE_STATE_ERROR as ERROR, VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY, VFIO_DEVICE_STATE_RUNNING as RUNNING,
  VFIO_DEVICE_STATE_STOP as STOP, VFIO_DEVICE_STATE_STOP_COPY as STOP_COPY, VFIO_MIGRATION_PRE_COPY, VFIO_MIGRATION_STOP_COPY,
} from '@vmmkit/core/uapi';
import { DEFAULT_CAPABILITIES, VFIO_USER_DEVICE_FEATURE } from '@vmmkit/core/vfio-user';
import { SimHost } from '@vmmkit/sim';
import { CLIENT_CAPABILITIES } from '@vmmkit/backend-vfio-user';
import { VfioMigration, migStateName } from '@vmmkit/migration';
import { RAM_SIZE, dirtyPages, makeVfioUserNic, startNicTraffic, type VfioUserNic } from './vfio-user-rig.js';

const NIC_STATE = (nic: VfioUserNic): Buffer => Buffer.from(nic.server.model.migration!.save());

async function drain(mig: VfioMigration): Promise<{ chunks: Uint8Array[]; until: 'empty' | 'end' }> {
  const chunks: Uint8Array[] = [];
  for (;;) {
    const got = await mig.readChunk();
    if (got === 'empty' || got === 'end') return { chunks, until: got };
    chunks.push(got.slice());
  }
}

function changes(events: VmmEventBus): string[] {
  const seen: string[] = [];
  events.on('migration:device-state', (e) => seen.push(`${e.from}>${e.to}`));
  return seen;
}

describe('VfioMigration over vfio-user', () => {
  const open: VfioUserNic[] = [];
  afterEach(async () => {
    for (const nic of open.splice(0)) await nic.close();
  });
  const nic = async (host: SimHost, options?: Parameters<typeof makeVfioUserNic>[1]): Promise<VfioUserNic> => {
    const made = await makeVfioUserNic(host, options);
    open.push(made);
    return made;
  };

  it('probes the server\'s migration flags and DMA logging through DEVICE_FEATURE: nothing blocks it', async () => {
    const src = await nic(new SimHost());
    expect(src.proxy.capabilities.migration).toEqual({ pgsize: 4096n, maxBitmapSize: 256n << 20n });
    expect(src.device.migrationFlags).toBe(VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY);
    expect(src.device.dmaLoggingSupported).toBe(true);
    expect(vfioMigrationVerdict(src.device)).toEqual({ warning: undefined });
  });

  it('moves the nic\'s state from one server to another over MIG_DATA_READ / MIG_DATA_WRITE, pieces within max_data_xfer_size', async () => {
    const host = new SimHost();
    const base = host.census();
    const src = await nic(host, { name: 'src-nic', capabilities: { ...CLIENT_CAPABILITIES, maxDataXferSize: 4096 } });
    const dst = await nic(host, { name: 'dst-nic', capabilities: { ...CLIENT_CAPABILITIES, maxDataXferSize: 4096 } });
    await startNicTraffic(src);
    src.advance(2);
    const mig = new VfioMigration(src.device, src.events);
    const seen = changes(src.events);

    await mig.saveSetup();
    expect([mig.state, mig.hasSession, mig.dataFd]).toEqual([PRE_COPY, true, -1]); // a session without an fd
    expect(await mig.precopyInfo()).toEqual({ initialBytes: 0n, dirtyBytes: 0n }); // vfio-user cannot say
    const estimate = await mig.stopCopySize(); // MIG_DATA_SIZE, served by vmmkit's server
    expect(estimate).toBeGreaterThan(0n);
    expect(estimate).toBeLessThan(1n << 20n);
    const initial = await drain(mig);
    expect(initial.until).toBe('empty'); // PRE_COPY: a short read means nothing more for now
    expect(initial.chunks.length).toBeGreaterThan(1);
    for (const c of initial.chunks) expect(c.byteLength).toBeLessThanOrEqual(4096);
    src.advance(1); // the device runs on: its state changes again
    const dirty = await drain(mig);
    expect(dirty.chunks.length).toBeGreaterThan(0);
    await mig.prepareSwitchover(); // no P2P: nothing
    await mig.switchover();
    expect(mig.state).toBe(STOP_COPY);
    const final = await drain(mig);
    expect(final.until).toBe('end'); // STOP_COPY: a short read is the end of the stream
    await mig.saveCleanup();
    expect([mig.state, mig.hasSession]).toEqual([STOP, false]);
    expect(seen).toEqual(['RUNNING>PRE_COPY', 'PRE_COPY>STOP_COPY', 'STOP_COPY>STOP']);
    src.advance(5); // a stopped device does not move

    const load = new VfioMigration(dst.device, dst.events);
    await load.loadSetup();
    for (const c of [...initial.chunks, ...dirty.chunks, ...final.chunks]) await load.writeChunk(c);
    await load.finishLoad();
    await load.start();
    expect(load.state).toBe(RUNNING);
    expect(NIC_STATE(dst).equals(NIC_STATE(src))).toBe(true);
    await src.close();
    await dst.close();
    expect(host.census()).toEqual(base);
  });

  it('refuses a corrupt stream when the state loads: the destination device is reset, named in the error', async () => {
    const dst = await nic(new SimHost(), { name: 'dst-nic' });
    const load = new VfioMigration(dst.device, dst.events);
    await load.loadSetup();
    await expect(load.writeChunk(new Uint8Array(64).fill(7))).rejects.toMatchObject({ name: 'VfioError', device: 'dst-nic', errno: 'EINVAL' });
    await expect(load.start()).rejects.toThrow(/^dst-nic: failed to start the device: the device state did not load: .*reset to RUNNING/);
    expect([load.state, load.hasSession]).toEqual([RUNNING, false]);
  });

  it('catches the nic\'s DMA into guest RAM through DMA logging over vfio-user (the container tracks by device)', async () => {
    const host = new SimHost();
    const src = await nic(host);
    const tracking = src.container.dirtyTracking;
    expect(tracking.decide().strategy).toBe('device');
    src.memory.startDirtyLog();
    await tracking.start();
    expect(tracking.loggingDevices).toEqual([src.device]);
    await startNicTraffic(src);
    src.advance(2); // 20 packets of 256 bytes: slots 0..19, pages 0x40..0x41
    expect(await tracking.sync(true)).toBe(2);
    expect(dirtyPages(src.memory)).toEqual([0x40, 0x41]);
    expect(await tracking.sync(true)).toBe(0); // each write is reported once
    src.advance(3); // slots 20..49: pages 0x41..0x43
    await tracking.sync(false);
    expect(dirtyPages(src.memory)).toEqual([0x40, 0x41, 0x42, 0x43]);
    await tracking.stop();
    // Logging is off in the server too: a report is refused.
    await expect(src.device.io.dmaLoggingReport(0n, RAM_SIZE, 4096, new Uint8Array(32))).rejects.toMatchObject({ errno: 'EINVAL', device: 'vu-nic' });
  });

  for (const { pgsize, reportsPer1MiB, pages } of [
    // 4 KiB pages: 256 bits, 64 per 8-byte bitmap, so 4 reports; the two pages written, exactly.
    { pgsize: 4096n, reportsPer1MiB: 4, pages: [0x40, 0x41] },
    // 16 KiB pages: 64 bits, one report; its page 0x10 marks the four 4 KiB pages it covers.
    { pgsize: 16384n, reportsPer1MiB: 1, pages: [0x40, 0x41, 0x42, 0x43] },
  ]) {
    it(`respects the migration capability (pgsize ${pgsize}, max_bitmap_size 8): ${reportsPer1MiB} report(s) per MiB, pages ${pages.join(',')}`, async () => {
      const src = await nic(new SimHost(), { capabilities: { ...CLIENT_CAPABILITIES, migration: { pgsize, maxBitmapSize: 8n } } });
      expect(src.proxy.capabilities.migration).toEqual({ pgsize, maxBitmapSize: 8n });
      const reports = countFeatureRequests(src);
      await src.device.io.dmaLoggingStart([{ iova: 0n, length: RAM_SIZE }], 4096);
      await startNicTraffic(src);
      src.advance(2); // 20 packets of 256 bytes: 4 KiB pages 0x40..0x41
      const bitmap = new Uint8Array(32);
      reports.length = 0;
      await src.device.io.dmaLoggingReport(0n, RAM_SIZE, 4096, bitmap);
      expect(reports).toHaveLength(reportsPer1MiB);
      const set: number[] = [];
      bitmap.forEach((b, i) => { for (let k = 0; k < 8; k++) if (b & (1 << k)) set.push(i * 8 + k); });
      expect(set).toEqual(pages);
      await src.device.io.dmaLoggingStop();
    });
  }

  it('refuses a server migration capability the client cannot use', async () => {
    const host = new SimHost();
    const base = host.census();
    // The server agrees to the smaller max_bitmap_size of the two: 4 bytes cannot carry one u64 word.
    await expect(makeVfioUserNic(host, { capabilities: { ...CLIENT_CAPABILITIES, migration: { pgsize: 4096n, maxBitmapSize: 4n } } }))
      .rejects.toThrow(/max_bitmap_size 4 cannot hold one u64/);
    expect(host.census()).toEqual(base);
  });

  describe('a server without migration', () => {
    for (const [what, options] of [
      ['edu (a model without migration)', { model: 'edu' }],
      ['a nic served with migration off', { migrationFlags: 0 }],
    ] as const) {
      it(`${what}: a blocker naming the device, never a silent drop`, async () => {
        const src = await nic(new SimHost(), { name: 'vu-plain', ...options });
        expect(src.device.migrationFlags).toBe(0);
        expect(src.device.dmaLoggingSupported).toBe(false); // no migration capability agreed either
        expect(src.proxy.capabilities.migration).toBeUndefined();
        expect(vfioMigrationVerdict(src.device).blocker).toBe(
          'vu-plain: its vfio-user server does not support migration (no VFIO_DEVICE_FEATURE_MIGRATION), so its device state cannot be moved',
        );
        expect(() => new VfioMigration(src.device, src.events)).toThrow(/vu-plain: failed to set up migration: the device does not support VFIO migration v2/);
      });
    }

    it('a client that offers no migration capability does not log DMA over vfio-user', async () => {
      const src = await nic(new SimHost(), { capabilities: { ...DEFAULT_CAPABILITIES, maxMsgFds: 16 } });
      expect(src.device.migrationFlags).toBe(VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY);
      expect(src.device.dmaLoggingSupported).toBe(false);
      await expect(src.device.io.dmaLoggingStart([{ iova: 0n, length: RAM_SIZE }], 4096)).rejects.toMatchObject({ errno: 'ENOTTY', device: 'vu-nic' });
      expect(vfioMigrationVerdict(src.device).blocker).toBe("vu-nic: VFIO device doesn't support device and IOMMU dirty tracking");
    });
  });

  describe('a server that dies mid-migration', () => {
    for (const when of ['precopy', 'stop-copy', 'resuming'] as const) {
      it(`in ${when}: a typed error naming the device, the device marked failed, nothing left behind`, async () => {
        const host = new SimHost();
        const base = host.census();
        const src = await makeVfioUserNic(host, { name: 'dying-nic' });
        const warnings: string[] = [];
        src.events.on('vfio:warning', (e) => warnings.push(e.message));
        const mig = new VfioMigration(src.device, src.events);
        if (when === 'resuming') await mig.loadSetup();
        else {
          await startNicTraffic(src);
          src.advance(2);
          await mig.saveSetup();
          await mig.readChunk();
          if (when === 'stop-copy') await mig.switchover();
        }
        src.serverEnd.close(); // the server's side of the connection is gone
        const step = when === 'resuming' ? mig.writeChunk(new Uint8Array(16)) : drain(mig);
        const error = await step.then(() => undefined, (e: unknown) => e);
        expect(error).toBeInstanceOf(VfioError);
        expect(error).toMatchObject({ device: 'dying-nic', errno: 'ENOTCONN' });
        expect(src.device.failed).toBe(true);
        // The source gives up the migration: the device cannot be put back, and says so.
        const undo = when === 'resuming' ? mig.abortLoad() : mig.resumeRunning();
        await expect(undo).rejects.toMatchObject({ name: 'VfioError', device: 'dying-nic' });
        expect(migStateName(mig.state)).toBe(migStateName(ERROR));
        expect(mig.hasSession).toBe(false);
        expect(warnings.every((w) => w.startsWith('dying-nic:'))).toBe(true);
        mig.cleanup();
        await src.close();
        expect(host.census()).toEqual(base);
      });
    }
  });
});

/** The DEVICE_FEATURE requests the client sends from now on. */
function countFeatureRequests(nic: VfioUserNic): number[] {
  const sent: number[] = [];
  const request = nic.proxy.request.bind(nic.proxy);
  nic.proxy.request = (command, ...rest) => {
    if (command === VFIO_USER_DEVICE_FEATURE) sent.push(command);
    return request(command, ...rest);
  };
  return sent;
}
