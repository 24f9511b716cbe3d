// VFIO migration v2 on a mediated device opened through its cdev, as a VMM drives it: bind to an
// iommufd, the MIGRATION feature, the MIG_DEVICE_STATE walk, the data fd in STOP_COPY, PRE_COPY
// and RESUMING. On SimHost with a migrating nic mdev, and in the kernel tier on Linux's mtty sample.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HostError, type HostKernel } from '@vmmkit/core';
import {
  VFIO_DEVICE_STATE_ERROR as ERROR, VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY, VFIO_DEVICE_STATE_RESUMING as
  RESUMING, VFIO_DEVICE_STATE_RUNNING as RUNNING, VFIO_DEVICE_STATE_RUNNING_P2P as RUNNING_P2P,
  VFIO_DEVICE_STATE_STOP as STOP, VFIO_DEVICE_STATE_STOP_COPY as STOP_COPY, IOMMU_IOAS_ALLOC, iommu_ioas_alloc,
  O_CLOEXEC, O_RDWR, VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, VFIO_DEVICE_FEATURE_MIGRATION, VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_RESET, VFIO_MIG_GET_PRECOPY_INFO, VFIO_MIGRATION_P2P,
  VFIO_MIGRATION_PRE_COPY, VFIO_MIGRATION_STOP_COPY, vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd,
  vfio_device_feature_mig_data_size, vfio_device_feature_migration, vfio_precopy_info,
} from '@vmmkit/core/uapi';
import { SimHost } from '../src/index.js';
import { expectErrno, feature, getMigState, setMigState } from './device-harness.js';
import { call } from './iommufd-helpers.js';
import { mttyTarget, onTarget, type HostTarget } from './host-targets.js';

/** The nic model as an mdev offering what mtty offers: STOP_COPY, P2P and PRE_COPY. */
const SIM_MDEV = 'c0ffee00-0000-4000-8000-00000000d001';
const simTarget: HostTarget & { uuid: string } = {
  name: 'SimHost',
  uuid: SIM_MDEV,
  host: () => new SimHost({ devices: [{ uuid: SIM_MDEV, model: 'nic', migration: { flags: ['STOP_COPY', 'P2P', 'PRE_COPY'] } }] }),
};

const ALL_FLAGS = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY;

/** An mdev's cdev, bound to a fresh iommufd and attached to an IOAS, as a VMM's realize leaves it. */
class MdevUnderTest {
  readonly iommufd: number;
  readonly fd: number;
  readonly #dataFds: number[] = [];

  constructor(readonly host: HostKernel, uuid: string, bind = true) {
    const [cdev] = host.readdir(`/sys/bus/mdev/devices/${uuid}/vfio-dev`);
    this.iommufd = host.open('/dev/iommu', O_RDWR | O_CLOEXEC);
    this.fd = host.open(`/dev/vfio/devices/${cdev}`, O_RDWR | O_CLOEXEC);
    if (!bind) return;
    call(host, this.fd, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, { iommufd: this.iommufd });
    const ioas = call(host, this.iommufd, IOMMU_IOAS_ALLOC, iommu_ioas_alloc).out_ioas_id;
    call(host, this.fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, vfio_device_attach_iommufd_pt, { pt_id: ioas });
  }

  /** Move to `state`; returns the data fd the arc opened (closed with the device), or -1. */
  set(state: number): number {
    const fd = setMigState(this.host, this.fd, state);
    if (fd >= 0) this.#dataFds.push(fd);
    return fd;
  }

  get state(): number {
    return getMigState(this.host, this.fd);
  }

  /** Read a saving data fd until its end: 0 (STOP_COPY's end) or ENOMSG (PRE_COPY's for now). */
  drain(dataFd: number): Uint8Array {
    const parts: Uint8Array[] = [];
    for (;;) {
      const buf = new Uint8Array(4096);
      let n: number;
      try {
        n = this.host.read(dataFd, buf);
      } catch (e) {
        if (e instanceof HostError && e.errno === 'ENOMSG') break;
        throw e;
      }
      if (n === 0) break;
      parts.push(buf.subarray(0, n));
    }
    return Uint8Array.from(parts.flatMap((p) => [...p]));
  }

  precopyInfo(dataFd: number): { initial: bigint; dirty: bigint } {
    const buf = vfio_precopy_info.encode({ argsz: vfio_precopy_info.size });
    this.host.ioctl(dataFd, VFIO_MIG_GET_PRECOPY_INFO, buf);
    const info = vfio_precopy_info.decode(buf);
    return { initial: info.initial_bytes, dirty: info.dirty_bytes };
  }

  /** Resume `stream` into the device from STOP, ending in STOP. */
  resume(stream: Uint8Array): void {
    const data = this.set(RESUMING);
    expect(data).toBeGreaterThanOrEqual(0);
    expect(this.host.write(data, stream)).toBe(stream.byteLength);
    this.set(STOP);
  }

  /** Close everything, leaving the device RUNNING for the next test (closing the device resets it). */
  close(): void {
    for (const fd of this.#dataFds.splice(0)) this.host.close(fd);
    this.host.close(this.fd);
    this.host.close(this.iommufd);
  }
}

function describeMdevMigration(target: HostTarget & { uuid?: string }): void {
  const title = onTarget(`VFIO migration v2 on an mdev cdev: ${target.name === 'SimHost' ? 'nic model' : 'mtty sample'}`, target);
  describe.skipIf(target.unavailable !== undefined)(title, () => {
    let dev: MdevUnderTest;
    beforeEach(() => {
      dev = new MdevUnderTest(target.host(), target.uuid!);
    });
    afterEach(() => dev.close());

    it('refuses every ioctl but VFIO_DEVICE_BIND_IOMMUFD before the cdev is bound (EINVAL)', () => {
      const unbound = new MdevUnderTest(dev.host, target.uuid!, false);
      try {
        expectErrno(() => feature(unbound.host, unbound.fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION, new Uint8Array(8)), 'EINVAL');
        expectErrno(() => unbound.host.ioctl(unbound.fd, VFIO_DEVICE_RESET), 'EINVAL');
      } finally {
        unbound.host.close(unbound.fd);
        unbound.host.close(unbound.iommufd);
      }
    });

    it('offers STOP_COPY, P2P and PRE_COPY through VFIO_DEVICE_FEATURE_MIGRATION, which is GET-only', () => {
      const out = feature(dev.host, dev.fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION, new Uint8Array(vfio_device_feature_migration.size));
      expect(vfio_device_feature_migration.decode(out).flags).toBe(BigInt(ALL_FLAGS));
      feature(dev.host, dev.fd, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION);
      expectErrno(() => feature(dev.host, dev.fd, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIGRATION), 'EINVAL');
    });

    it('starts RUNNING and walks the state machine; arcs that open no session return data_fd -1', () => {
      expect(dev.state).toBe(RUNNING);
      for (const state of [RUNNING_P2P, STOP, RUNNING, STOP, RUNNING_P2P, RUNNING]) {
        expect(dev.set(state)).toBe(-1);
        expect(dev.state).toBe(state);
      }
      expectErrno(() => dev.set(ERROR), 'EINVAL');
      expect(dev.state).toBe(RUNNING);
    });

    it('saves in STOP_COPY up to MIG_DATA_SIZE bytes, ends the stream, and resumes it', () => {
      dev.set(STOP);
      const size = vfio_device_feature_mig_data_size.decode(
        feature(dev.host, dev.fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, new Uint8Array(8)),
      ).stop_copy_length;
      const data = dev.set(STOP_COPY);
      expect(data).toBeGreaterThanOrEqual(0);
      const stream = dev.drain(data);
      expect(stream.byteLength).toBeGreaterThan(0);
      expect(BigInt(stream.byteLength)).toBeLessThanOrEqual(size);
      expect(dev.host.read(data, new Uint8Array(16))).toBe(0); // a permanent end of stream
      expectErrno(() => dev.precopyInfo(data), 'EINVAL'); // only PRE_COPY has precopy info
      dev.set(STOP);
      expectErrno(() => dev.host.read(data, new Uint8Array(16)), 'ENODEV'); // the session ended
      dev.resume(stream);
      dev.set(RUNNING);
      expect(dev.state).toBe(RUNNING);
    });

    it('fails a resume from a truncated stream, and VFIO_DEVICE_RESET brings the device back to RUNNING', () => {
      dev.set(STOP);
      const stream = dev.drain(dev.set(STOP_COPY));
      dev.set(STOP);
      const data = dev.set(RESUMING);
      dev.host.write(data, stream.subarray(0, stream.byteLength - 1));
      expectErrno(() => dev.set(STOP), 'EINVAL');
      // The uAPI lets a failed arc leave the original state or ERROR; drivers differ (mtty stays).
      expect([RESUMING, ERROR]).toContain(dev.state);
      dev.host.ioctl(dev.fd, VFIO_DEVICE_RESET);
      expect(dev.state).toBe(RUNNING);
    });

    it('streams initial bytes in PRE_COPY with VFIO_MIG_GET_PRECOPY_INFO, then the rest on the same fd in STOP_COPY', () => {
      const data = dev.set(PRE_COPY);
      expect(data).toBeGreaterThanOrEqual(0);
      const info = dev.precopyInfo(data);
      expect(info.initial).toBeGreaterThan(0n);
      const initial = dev.drain(data);
      expect(BigInt(initial.byteLength)).toBeGreaterThanOrEqual(info.initial);
      expect(dev.precopyInfo(data).initial).toBe(0n);
      // The temporary end of a PRE_COPY stream: the uAPI says drivers should answer ENOMSG; mtty
      // answers 0. drain() takes either.
      expect(dev.set(STOP_COPY)).toBe(-1); // the PRE_COPY session goes on into STOP_COPY
      const rest = dev.drain(data);
      expect(dev.host.read(data, new Uint8Array(16))).toBe(0);
      dev.set(STOP);
      const stream = new Uint8Array(initial.byteLength + rest.byteLength);
      stream.set(initial);
      stream.set(rest, initial.byteLength);
      dev.resume(stream);
      dev.set(RUNNING);
    });
  });
}

describeMdevMigration(simTarget);
describeMdevMigration(mttyTarget());
