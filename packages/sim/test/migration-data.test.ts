// VFIO migration v2 data fds on the simulated host: a NIC's state carried from one SimHost to
// another, PRE_COPY with ENOMSG and VFIO_MIG_GET_PRECOPY_INFO, STOP_COPY's end of stream, old
// fds after the state moves on, failed resumes into ERROR, and the migration features.

import { describe, expect, it } from 'vitest';
import {
  VFIO_DEVICE_STATE_ERROR as ERROR, VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY, VFIO_DEVICE_STATE_PRE_COPY_P2P as
  PRE_COPY_P2P, VFIO_DEVICE_STATE_RESUMING as RESUMING, VFIO_DEVICE_STATE_RUNNING as RUNNING,
  VFIO_DEVICE_STATE_RUNNING_P2P as RUNNING_P2P, VFIO_DEVICE_STATE_STOP as STOP, VFIO_DEVICE_STATE_STOP_COPY as
  STOP_COPY, EFD_NONBLOCK, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
  VFIO_DEVICE_FEATURE_MIGRATION, VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_RESET,
  VFIO_MIG_GET_PRECOPY_INFO, VFIO_MIGRATION_P2P, VFIO_MIGRATION_PRE_COPY, VFIO_MIGRATION_STOP_COPY,
  vfio_device_feature_mig_data_size, vfio_device_feature_migration, vfio_precopy_info,
} from '@vmmkit/core/uapi';
import { SimHost, type SimMigrationFlag } from '../src/index.js';
import type { NicModel } from '../src/devices/nic.js';
import * as R from '../src/devices/nic-regs.js';
import {
  bar, enableBusMaster, expectErrno, expectSameBytes, feature, getMigState, identityDma, openDevice, read64, setMigState, write32, write64,
} from './device-harness.js';

const NIC = '0000:00:04.0';
const EDU = '0000:00:03.0';
const ALL: SimMigrationFlag[] = ['STOP_COPY', 'P2P', 'PRE_COPY'];
const RING = 0x10_0000n;

function nicHost(flags: SimMigrationFlag[] = ALL) {
  const host = new SimHost({ devices: [{ bdf: NIC, model: 'nic', migration: { flags } }, { bdf: EDU, model: 'edu' }] });
  const fd = openDevice(host, NIC);
  return { host, fd, nic: host.kernel.device(NIC).model as NicModel };
}

/** Program the NIC to receive 1000 packets per second into a 64-slot ring. */
function startTraffic(host: SimHost, fd: number): void {
  enableBusMaster(host, fd);
  identityDma(host, NIC, RING, 64 * 256);
  write64(host, fd, bar(0, R.NIC_RX_RING_BASE), RING);
  write32(host, fd, bar(0, R.NIC_RX_RING_SIZE), 64);
  write32(host, fd, bar(0, R.NIC_RX_PKT_SIZE), 256);
  write32(host, fd, bar(0, R.NIC_RATE_PPS), 1000);
  write32(host, fd, bar(0, R.NIC_CTRL), R.NIC_CTRL_RX_EN);
}

/** Read a data fd to its end (STOP_COPY) or its temporary end (PRE_COPY: ENOMSG). */
function drain(host: SimHost, dataFd: number, chunk = 1000): Uint8Array {
  const parts: Uint8Array[] = [];
  for (;;) {
    const buf = new Uint8Array(chunk);
    let n: number;
    try {
      n = host.read(dataFd, buf);
    } catch (e) {
      if ((e as { errno?: string }).errno === 'ENOMSG') break;
      throw e;
    }
    if (n === 0) break;
    parts.push(buf.subarray(0, n));
  }
  const out = new Uint8Array(parts.reduce((s, p) => s + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

function precopyInfo(host: SimHost, dataFd: number) {
  const buf = vfio_precopy_info.encode({});
  host.ioctl(dataFd, VFIO_MIG_GET_PRECOPY_INFO, buf);
  return vfio_precopy_info.decode(buf);
}

describe('device state from one host to another', () => {
  it('stops the source in STOP_COPY, streams its state, and resumes it exactly on the destination', () => {
    const src = nicHost(['STOP_COPY']);
    startTraffic(src.host, src.fd);
    src.host.advance(30);
    const stream = (() => {
      const data = setMigState(src.host, src.fd, STOP_COPY);
      const bytes = drain(src.host, data, 4096);
      expect(src.host.read(data, new Uint8Array(8))).toBe(0); // end of stream, every time
      src.host.close(data);
      return bytes;
    })();
    src.host.advance(30); // stopped: no traffic
    expect(read64(src.host, src.fd, bar(0, R.NIC_RX_PACKETS))).toBe(30n);

    const dst = nicHost(['STOP_COPY']);
    const data = setMigState(dst.host, dst.fd, RESUMING);
    for (let at = 0; at < stream.byteLength; at += 777) dst.host.write(data, stream.subarray(at, at + 777));
    expect(setMigState(dst.host, dst.fd, RUNNING)).toBe(-1);
    dst.host.close(data);
    expectSameBytes(dst.nic.save(), src.nic.save());
    expect(read64(dst.host, dst.fd, bar(0, R.NIC_RX_PACKETS))).toBe(30n);
    expect(read64(dst.host, dst.fd, bar(0, R.NIC_RX_RING_BASE))).toBe(RING);
  });

  it('precopies while running: initial bytes, ENOMSG at the temporary end, dirty bytes as traffic changes the state', () => {
    const src = nicHost();
    startTraffic(src.host, src.fd);
    const data = setMigState(src.host, src.fd, PRE_COPY);
    const full = Number(precopyInfo(src.host, data).initial_bytes);
    expect(precopyInfo(src.host, data)).toMatchObject({ argsz: 24, initial_bytes: BigInt(full), dirty_bytes: 0n });
    const part = new Uint8Array(100);
    expect(src.host.read(data, part)).toBe(100);
    expect(precopyInfo(src.host, data).initial_bytes).toBe(BigInt(full - 100));
    const initial = drain(src.host, data);
    expect(initial.byteLength).toBe(full - 100);
    expectErrno(() => src.host.read(data, part), 'ENOMSG');
    src.host.advance(10); // still running in PRE_COPY
    expect(precopyInfo(src.host, data)).toMatchObject({ initial_bytes: 0n, dirty_bytes: BigInt(full) });
    expect(drain(src.host, data).byteLength).toBe(full);
    expect(setMigState(src.host, src.fd, PRE_COPY_P2P)).toBe(-1);
    src.host.advance(10); // PRE_COPY_P2P: the NIC does no peer-to-peer DMA, so it keeps receiving
    expect(setMigState(src.host, src.fd, STOP_COPY)).toBe(-1); // the same fd carries on
    expect(drain(src.host, data).byteLength).toBe(full);
    expect(src.host.read(data, part)).toBe(0);
    expectErrno(() => precopyInfo(src.host, data), 'EINVAL'); // not a PRE_COPY state any more
    expect(read64(src.host, src.fd, bar(0, R.NIC_RX_PACKETS))).toBe(20n);
    src.host.close(data);
  });

  it('carries a precopied stream (initial, dirty and final records) to a destination that loads the newest', () => {
    const src = nicHost();
    startTraffic(src.host, src.fd);
    const data = setMigState(src.host, src.fd, PRE_COPY);
    const parts = [drain(src.host, data, 3000)];
    src.host.advance(7);
    parts.push(drain(src.host, data, 3000));
    setMigState(src.host, src.fd, STOP_COPY);
    parts.push(drain(src.host, data, 3000));
    const dst = nicHost();
    const rdata = setMigState(dst.host, dst.fd, RESUMING);
    for (const p of parts) dst.host.write(rdata, p);
    setMigState(dst.host, dst.fd, STOP);
    expectSameBytes(dst.nic.save(), src.nic.save());
  });
});

describe('data fd rules', () => {
  it('is read-only while saving and write-only while resuming, and has no file position', () => {
    const { host, fd } = nicHost();
    const save = setMigState(host, fd, STOP_COPY);
    expectErrno(() => host.write(save, new Uint8Array(4)), 'EBADF');
    expectErrno(() => host.pread(save, new Uint8Array(4), 0n), 'ESPIPE');
    expectErrno(() => host.ioctl(save, 0x3b99, new Uint8Array(24)), 'ENOTTY');
    setMigState(host, fd, STOP);
    const resume = setMigState(host, fd, RESUMING);
    expectErrno(() => host.read(resume, new Uint8Array(4)), 'EBADF');
    expectErrno(() => host.ioctl(resume, VFIO_MIG_GET_PRECOPY_INFO, vfio_precopy_info.encode({})), 'ENOTTY');
  });

  it('ends an old fd when the state moves on: ENODEV, and the driver lets go of it', () => {
    const { host, fd } = nicHost();
    const data = setMigState(host, fd, PRE_COPY);
    host.close(data);
    expect(host.census().objects.data_fd).toBe(1); // the session still holds the file
    setMigState(host, fd, RUNNING);
    expect(host.census().objects.data_fd).toBeUndefined();
    const again = setMigState(host, fd, PRE_COPY);
    setMigState(host, fd, RUNNING);
    expectErrno(() => host.read(again, new Uint8Array(8)), 'ENODEV');
    const third = setMigState(host, fd, PRE_COPY);
    expectErrno(() => precopyInfo(host, again), 'ENODEV'); // device in PRE_COPY, but this session ended
    expect(precopyInfo(host, third).initial_bytes).toBeGreaterThan(0n);
    expectErrno(() => host.ioctl(third, VFIO_MIG_GET_PRECOPY_INFO, vfio_precopy_info.encode({ argsz: 16 })), 'EINVAL');
    host.close(again);
    host.close(third);
    host.close(fd);
    expect(host.census()).toEqual({ fds: 0, objects: {} });
  });

  it('drops the data fd of a device that is reset, and returns the device to RUNNING', () => {
    const { host, fd } = nicHost();
    const data = setMigState(host, fd, STOP_COPY);
    host.ioctl(fd, VFIO_DEVICE_RESET);
    expect(getMigState(host, fd)).toBe(RUNNING);
    expectErrno(() => host.read(data, new Uint8Array(8)), 'ENODEV');
  });

  it('stops a device that is closed mid-migration: its data fd dies, and it reopens RUNNING', () => {
    const { host, fd } = nicHost();
    const data = setMigState(host, fd, STOP);
    expect(data).toBe(-1);
    const save = setMigState(host, fd, STOP_COPY);
    host.close(fd);
    expectErrno(() => host.read(save, new Uint8Array(8)), 'ENODEV');
    host.close(save);
    const again = openDevice(host, NIC);
    expect(getMigState(host, again)).toBe(RUNNING);
  });
});

describe('failed resume', () => {
  it('refuses a stream that is not a device state at write(), then lands in ERROR until reset', () => {
    const { host, fd } = nicHost();
    setMigState(host, fd, STOP);
    const data = setMigState(host, fd, RESUMING);
    expectErrno(() => host.write(data, new Uint8Array(64).fill(7)), 'EINVAL');
    expectErrno(() => host.write(data, new Uint8Array(8)), 'ENODEV');
    expectErrno(() => setMigState(host, fd, STOP), 'EINVAL');
    expect(getMigState(host, fd)).toBe(ERROR);
    for (const s of [STOP, RUNNING, RUNNING_P2P, PRE_COPY]) expectErrno(() => setMigState(host, fd, s), 'EINVAL');
    host.ioctl(fd, VFIO_DEVICE_RESET);
    expect(getMigState(host, fd)).toBe(RUNNING);
  });

  it('fails leaving RESUMING when the stream stops inside a record', () => {
    const src = nicHost();
    const stream = drain(src.host, setMigState(src.host, src.fd, STOP_COPY));
    const { host, fd } = nicHost();
    const data = setMigState(host, fd, RESUMING);
    host.write(data, stream.subarray(0, stream.byteLength - 1));
    expectErrno(() => setMigState(host, fd, RUNNING), 'EINVAL');
    expect(getMigState(host, fd)).toBe(ERROR);
  });

  it('refuses a stream saved by another kind of device', () => {
    const { host, fd } = nicHost();
    const data = setMigState(host, fd, RESUMING);
    const record = new Uint8Array(32);
    const dv = new DataView(record.buffer);
    dv.setUint32(0, 0x4d49_5356, true);
    dv.setUint16(4, 1, true);
    record.set(new TextEncoder().encode('toaster'), 16);
    expectErrno(() => host.write(data, record), 'EINVAL');
  });
});

describe('migration features', () => {
  it('reports the configured flags, the stop-copy size, and supports PROBE', () => {
    const { host, fd, nic } = nicHost();
    const get = (f: number) => feature(host, fd, VFIO_DEVICE_FEATURE_GET | f, new Uint8Array(8));
    const flags = vfio_device_feature_migration.decode(get(VFIO_DEVICE_FEATURE_MIGRATION)).flags;
    expect(flags).toBe(BigInt(VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY));
    const size = vfio_device_feature_mig_data_size.decode(get(VFIO_DEVICE_FEATURE_MIG_DATA_SIZE));
    expect(size.stop_copy_length).toBe(BigInt(32 + nic.save().byteLength));
    feature(host, fd, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION);
    feature(host, fd, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | 2);
    expectErrno(() => feature(host, fd, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIGRATION), 'EINVAL');
    expectErrno(() => feature(host, fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIGRATION, new Uint8Array(8)), 'EINVAL');
    expectErrno(() => feature(host, fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION, new Uint8Array(4)), 'EINVAL');
    expectErrno(() => feature(host, fd, VFIO_DEVICE_FEATURE_MIGRATION, new Uint8Array(8)), 'EINVAL');
  });

  it('keeps the core feature rules: argsz, unknown flags, GET with SET, unknown features', () => {
    const { host, fd } = nicHost();
    const edu = openDevice(host, EDU);
    expectErrno(() => feature(host, fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | 1, new Uint8Array(8)), 'EINVAL');
    expectErrno(() => feature(host, fd, (1 << 19) | VFIO_DEVICE_FEATURE_GET | 1, new Uint8Array(8)), 'EINVAL');
    expectErrno(() => feature(host, fd, VFIO_DEVICE_FEATURE_GET | 0x7777), 'ENOTTY');
    // vfio-pci's low-power features: their arguments are checked as vfio-pci does (entering them is not modelled).
    expectErrno(() => feature(host, fd, 3), 'EINVAL');
    expectErrno(() => feature(host, fd, VFIO_DEVICE_FEATURE_GET | 4, new Uint8Array(8)), 'EINVAL');
    feature(host, fd, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET | 5);
    expectErrno(() => feature(host, fd, VFIO_DEVICE_FEATURE_SET | 0, new Uint8Array(16)), 'ENOTTY'); // the VF token: no SR-IOV PF here
    expectErrno(() => feature(host, edu, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION, new Uint8Array(8)), 'ENOTTY');
    expectErrno(() => feature(host, edu, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE), 'ENOTTY');
    const short = new Uint8Array(8);
    new DataView(short.buffer).setUint32(0, 7, true);
    expectErrno(() => host.ioctl(fd, 0x3b75, short), 'EINVAL');
  });

  it('refuses migration flags without STOP_COPY, or on a model that has no state to move', () => {
    expect(() => new SimHost({ devices: [{ bdf: NIC, model: 'nic', migration: { flags: ['P2P'] } }] })).toThrow(/STOP_COPY/);
    expect(() => new SimHost({ devices: [{ bdf: EDU, model: 'edu', migration: { flags: ['STOP_COPY'] } }] })).toThrow(/cannot offer migration/);
  });

  it('counts a failed install of the data fd as the kernel does: the state moved on, the fd is EMFILE', () => {
    const host = new SimHost({ devices: [{ bdf: NIC, model: 'nic', migration: { flags: ALL } }], fdLimit: 5 });
    const fd = openDevice(host, NIC); // 3
    host.eventfd(0, EFD_NONBLOCK); // 4: the table is full
    expectErrno(() => setMigState(host, fd, STOP_COPY), 'EMFILE');
    expect(getMigState(host, fd)).toBe(STOP_COPY);
    expect(host.census().objects.data_fd).toBe(1); // held by the session
    setMigState(host, fd, STOP);
    expect(host.census().objects.data_fd).toBeUndefined();
  });
});
