// VfioMigration's happy paths on SimHost: the source walk with precopy (initial data, ENOMSG,
// dirty data from nic traffic, P2P quiescing, STOP_COPY to the end), the destination load, and
// the device state arriving byte for byte, on both backends.

import { describe, expect, it } from 'vitest';
import { HostError, errnoNumber, VfioError } from '@vmmkit/core';
import {
  VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY, VFIO_DEVICE_STATE_RUNNING as RUNNING, VFIO_DEVICE_STATE_STOP as STOP,
  VFIO_DEVICE_STATE_STOP_COPY as STOP_COPY, VFIO_DEVICE_FEATURE,
} from '@vmmkit/core/uapi';
import { ArgumentError } from '@vmmkit/core';
import { VFIO_MIG_STOP_COPY_SIZE, VfioMigration, migStateName } from '../src/index.js';
import { BACKENDS, concat, drain, rig, startTraffic } from './vfio-migration-harness.js';

describe.for(BACKENDS)('VfioMigration on the %s backend', (backend) => {
  it('walks the source through PRE_COPY and STOP_COPY, and the destination loads the same device state', async () => {
    const src = await rig(backend, { chunkSize: 16 << 10 });
    const { mig } = src;
    expect([mig.state, mig.dataFd, mig.precopySupported, mig.p2pSupported]).toEqual([RUNNING, -1, true, true]);
    await startTraffic(src.nic);
    src.host.advance(20);
    expect(await mig.precopyInfo()).toEqual({ initialBytes: 0n, dirtyBytes: 0n }); // not precopying yet

    await mig.saveSetup();
    expect(mig.state).toBe(PRE_COPY);
    expect(mig.dataFd).toBeGreaterThanOrEqual(0);
    const initial = await mig.precopyInfo();
    expect(initial.initialBytes).toBeGreaterThan(16n << 10n); // more than one chunk
    expect(initial.dirtyBytes).toBe(0n);
    expect(await mig.stopCopySize()).toBe(initial.initialBytes); // the nic's state is all it streams
    const first = await drain(mig);
    expect(first.until).toBe('empty'); // ENOMSG: drained for now
    expect(first.chunks.length).toBeGreaterThan(1);
    expect(BigInt(first.bytes)).toBe(initial.initialBytes);
    expect(await mig.precopyInfo()).toEqual({ initialBytes: 0n, dirtyBytes: 0n });
    expect(await mig.readChunk()).toBe('empty');

    src.host.advance(10); // traffic changes the running device: its state is dirty again
    const dirty = await mig.precopyInfo();
    expect(dirty.initialBytes).toBe(0n);
    expect(dirty.dirtyBytes).toBeGreaterThan(0n);
    const second = await drain(mig);
    expect([second.until, BigInt(second.bytes)]).toEqual(['empty', dirty.dirtyBytes]);

    const dataFd = mig.dataFd;
    await mig.prepareSwitchover();
    expect(migStateName(mig.state)).toBe('PRE_COPY_P2P');
    await mig.switchover();
    expect(mig.state).toBe(STOP_COPY);
    expect(mig.dataFd).toBe(dataFd); // the precopy session carries on into STOP_COPY
    expect(await mig.precopyInfo()).toEqual({ initialBytes: 0n, dirtyBytes: 0n });
    const final = await drain(mig);
    expect(final.until).toBe('end');
    expect(await mig.readChunk()).toBe('end'); // and stays ended
    const source = src.host.deviceState(src.name);
    src.host.advance(10);
    expect(src.host.deviceState(src.name)).toEqual(source); // stopped: no traffic
    expect(src.changes).toEqual(['RUNNING>PRE_COPY', 'PRE_COPY>PRE_COPY_P2P', 'PRE_COPY_P2P>STOP_COPY']);

    const dst = await rig(backend);
    await dst.mig.loadSetup();
    expect(migStateName(dst.mig.state)).toBe('RESUMING');
    expect(dst.mig.dataFd).toBeGreaterThanOrEqual(0);
    const stream = concat([...first.chunks, ...second.chunks, ...final.chunks]);
    for (let at = 0; at < stream.byteLength; at += 5000) await dst.mig.writeChunk(stream.subarray(at, at + 5000));
    await dst.mig.start();
    expect([dst.mig.state, dst.mig.dataFd]).toEqual([RUNNING, -1]);
    expect(dst.changes).toEqual(['RUNNING>RESUMING', 'RESUMING>RUNNING_P2P', 'RUNNING_P2P>RUNNING']);
    expect(dst.host.deviceState(dst.name)).toEqual(source);
    expect(dst.warnings).toEqual([]);
    await dst.close();

    // QEMU's save_cleanup: STOP_COPY → STOP after the migration, which ends the session.
    await mig.setStateOrReset(STOP);
    expect(mig.dataFd).toBe(-1);
    expect(src.warnings).toEqual([]);
    await src.close();
  });

  it('cancels a precopy on the source: RUNNING again, the data fd closed, the device still receiving', async () => {
    const src = await rig(backend);
    await startTraffic(src.nic);
    await src.mig.saveSetup();
    await drain(src.mig);
    await src.mig.prepareSwitchover();
    await src.mig.resumeRunning();
    expect([src.mig.state, src.mig.dataFd]).toEqual([RUNNING, -1]);
    expect(src.host.census().objects.data_fd).toBeUndefined();
    const before = src.host.deviceState(src.name);
    src.host.advance(10);
    expect(src.host.deviceState(src.name)).not.toEqual(before);
    expect(src.changes).toEqual(['RUNNING>PRE_COPY', 'PRE_COPY>PRE_COPY_P2P', 'PRE_COPY_P2P>RUNNING']);
    await src.mig.resumeRunning(); // already running: nothing to do
    expect(src.changes).toHaveLength(3);
    await src.close();
  });

  it('cancels after STOP_COPY: the stopped device runs again', async () => {
    const src = await rig(backend);
    await startTraffic(src.nic);
    await src.mig.switchover(); // no saveSetup: RUNNING → STOP_COPY in one request opens the session
    expect(src.mig.dataFd).toBeGreaterThanOrEqual(0);
    expect((await drain(src.mig)).until).toBe('end');
    await src.mig.resumeRunning();
    expect([src.mig.state, src.mig.dataFd]).toEqual([RUNNING, -1]);
    expect(src.changes).toEqual(['RUNNING>STOP_COPY', 'STOP_COPY>RUNNING']);
    await src.close();
  });

  it('estimates stop-copy at QEMU\'s 100 GiB, with a warning, when MIG_DATA_SIZE fails', async () => {
    const src = await rig(backend);
    src.host.injectFault({ ioctl: VFIO_DEVICE_FEATURE, errno: 'EIO' });
    expect(await src.mig.stopCopySize()).toBe(VFIO_MIG_STOP_COPY_SIZE);
    expect(src.warnings).toEqual([expect.stringMatching(/stop-copy size \(VFIO_DEVICE_FEATURE -> EIO\)/)]);
    expect(await src.mig.stopCopySize()).toBeGreaterThan(0n);
    expect(await src.mig.stopCopySize()).toBeLessThan(VFIO_MIG_STOP_COPY_SIZE);
    await src.close();
  });

  it('refuses to read or write without a session, and a device that cannot migrate', async () => {
    const src = await rig(backend);
    await expect(src.mig.readChunk()).rejects.toThrow(VfioError);
    await expect(src.mig.writeChunk(new Uint8Array(4))).rejects.toThrow(/0000:00:05.0: failed to write the migration data: no data transfer session/);
    src.vfio.migrationFlags = 0;
    expect(() => new VfioMigration(src.vfio, src.vmm.events)).toThrow(
      expect.objectContaining({ name: 'VfioError', errno: 'EOPNOTSUPP', device: '0000:00:05.0' }),
    );
    expect(() => new VfioMigration(src.vfio, src.vmm.events, { chunkSize: 0 })).toThrow(ArgumentError);
    await src.close();
  });

  it('refuses steps the device is in no state for, and leaves a stopped device to go straight to STOP_COPY', async () => {
    const src = await rig(backend);
    await src.mig.saveSetup();
    await expect(src.mig.saveSetup()).rejects.toThrow(expect.objectContaining({ errno: 'EINVAL', message: expect.stringContaining('start saving: the device is in PRE_COPY') }));
    await src.mig.switchover();
    await expect(src.mig.prepareSwitchover()).rejects.toThrow(/quiesce peer-to-peer DMA: the device is in STOP_COPY/);
    await src.mig.setStateOrReset(STOP);
    await src.mig.saveSetup(); // a VM saved while stopped (QEMU's vfio_save_setup in STOP)
    expect([src.mig.state, src.mig.dataFd]).toEqual([STOP, -1]);
    await src.mig.resumeRunning();
    await src.close();
  });

  it('writes a stream the kernel takes a little at a time, and retries calls interrupted by a signal', async () => {
    const src = await rig(backend);
    await startTraffic(src.nic);
    src.host.advance(5);
    await src.mig.switchover();
    const reads = src.host.read.bind(src.host);
    let interrupted = 0;
    src.host.read = (fd, buf) => (interrupted++ === 0 ? interrupt('read') : reads(fd, buf));
    const stream = concat((await drain(src.mig)).chunks);
    expect(interrupted).toBeGreaterThan(1);

    const dst = await rig(backend);
    const writes = dst.host.write.bind(dst.host);
    const sizes: number[] = [];
    dst.host.write = (fd, buf) => {
      if (sizes.length === 1) {
        sizes.push(-1);
        return interrupt('write');
      }
      sizes.push(Math.min(buf.byteLength, 1000));
      return writes(fd, buf.subarray(0, 1000)); // a short write
    };
    await dst.mig.loadSetup();
    await dst.mig.writeChunk(stream);
    expect(sizes.filter((n) => n > 0).reduce((a, b) => a + b, 0)).toBe(stream.byteLength);
    await dst.mig.start();
    expect(dst.host.deviceState(dst.name)).toEqual(src.host.deviceState(src.name));
    await dst.close();
    await src.mig.setStateOrReset(STOP);
    await src.close();
  });

  it('gives up on a data fd that takes no bytes, instead of spinning', async () => {
    const dst = await rig(backend);
    await dst.mig.loadSetup();
    dst.host.write = () => 0;
    await expect(dst.mig.writeChunk(new Uint8Array(10))).rejects.toThrow(
      expect.objectContaining({ errno: 'EIO', message: expect.stringContaining('took no bytes at offset 0 of 10') }),
    );
    // Leaving RESUMING makes the kernel load what it got, nothing: it refuses, and the device is reset.
    await expect(dst.mig.resumeRunning()).rejects.toThrow(/state to RUNNING: the device was reset to RUNNING: VFIO_DEVICE_FEATURE -> EINVAL/);
    expect([dst.mig.state, dst.mig.dataFd]).toEqual([RUNNING, -1]);
    await dst.close();
  });
});

function interrupt(syscall: string): never {
  throw new HostError({ errno: errnoNumber('EINTR'), syscall });
}
