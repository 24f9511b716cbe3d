// Helpers for the device-side tests: open a device fd the way VFIO_GROUP_GET_DEVICE_FD does,
// give a device an IO page table over plain user memory, and small ioctl/region wrappers.

import { expect } from 'vitest';
import { HostError, type HostMapping, type HostKernel } from '@vmmkit/core';
import {
  MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE, VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_GET_REGION_INFO, VFIO_DEVICE_SET_IRQS,
  VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, vfio_device_feature, vfio_device_feature_mig_state,
  vfio_irq_set, vfio_region_info,
} from '@vmmkit/core/uapi';
import type { SimHost } from '../src/index.js';
import type { DmaTarget } from '../src/iommu/dma-target.js';
import type { IommufdFile } from '../src/iommufd/iommufd-file.js';
import type { SimDevice } from '../src/kernel/sim-device.js';
import { VfioDeviceFile } from '../src/vfio/device-file.js';

export const CONFIG = 7n << 40n;
export const bar = (index: number, offset = 0): bigint => (BigInt(index) << 40n) + BigInt(offset);

/** Open `bdf` as VFIO_GROUP_GET_DEVICE_FD would (white box until the group model lands). */
export function openDevice(host: SimHost, bdf: string, via: 'group' | 'cdev' = 'group'): number {
  const file = new VfioDeviceFile(host.kernel, host.kernel.device(bdf), via);
  file.open();
  return host.kernel.fds.install(file);
}

/** The VfioDeviceFile behind an fd. */
export function deviceFile(host: SimHost, fd: number): VfioDeviceFile {
  return host.kernel.fds.get(fd) as VfioDeviceFile;
}

/** Anonymous read-write user memory. */
export function anon(host: SimHost, length: number): HostMapping {
  return host.mmap(length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
}

/** Give device `bdf` an IO page table mapping [iova, iova + length) onto fresh user memory. */
export function identityDma(host: SimHost, bdf: string, iova: bigint, length: number): HostMapping {
  const m = anon(host, length);
  const target: DmaTarget = {
    description: 'test page table',
    translate: (at, n, write) => {
      if (at < iova || at + BigInt(n) > iova + BigInt(length)) return { fault: `IOVA 0x${at.toString(16)} is not mapped` };
      return { spans: host.kernel.memory.resolve(m.addr + (at - iova), n, write ? 'write' : 'read') };
    },
    recordWrite: () => {},
  };
  host.kernel.device(bdf).dmaTarget = target;
  return m;
}

export function read32(host: SimHost, fd: number, offset: bigint): number {
  const b = new Uint8Array(4);
  expect(host.pread(fd, b, offset)).toBe(4);
  return new DataView(b.buffer).getUint32(0, true);
}

export function read16(host: SimHost, fd: number, offset: bigint): number {
  const b = new Uint8Array(2);
  expect(host.pread(fd, b, offset)).toBe(2);
  return new DataView(b.buffer).getUint16(0, true);
}

export function write32(host: SimHost, fd: number, offset: bigint, value: number): void {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value >>> 0, true);
  expect(host.pwrite(fd, b, offset)).toBe(4);
}

export function write16(host: SimHost, fd: number, offset: bigint, value: number): void {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, value, true);
  expect(host.pwrite(fd, b, offset)).toBe(2);
}

export function write64(host: SimHost, fd: number, offset: bigint, value: bigint): void {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, value, true);
  expect(host.pwrite(fd, b, offset)).toBe(8);
}

export function read64(host: SimHost, fd: number, offset: bigint): bigint {
  const b = new Uint8Array(8);
  expect(host.pread(fd, b, offset)).toBe(8);
  return new DataView(b.buffer).getBigUint64(0, true);
}

/** Turn on Bus Master Enable (and memory decoding) through the config region, as a driver does. */
export function enableBusMaster(host: SimHost, fd: number): void {
  write16(host, fd, CONFIG + 4n, read16(host, fd, CONFIG + 4n) | 0x6);
}

/** VFIO_DEVICE_GET_REGION_INFO with room for capabilities. */
export function regionInfo(host: SimHost, fd: number, index: number, argsz = 256) {
  const buf = new Uint8Array(Math.max(argsz, vfio_region_info.size));
  buf.set(vfio_region_info.encode({ argsz, index }));
  host.ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, buf);
  return { ...vfio_region_info.decode(buf), bytes: buf };
}

/** VFIO_DEVICE_SET_IRQS(TRIGGER, EVENTFD) for vectors [start, start + fds.length). */
export function setIrqEventfds(host: SimHost, fd: number, index: number, start: number, fds: readonly number[]): void {
  const data = new Uint8Array(4 * fds.length);
  fds.forEach((v, i) => new DataView(data.buffer).setInt32(4 * i, v, true));
  host.ioctl(fd, VFIO_DEVICE_SET_IRQS, vfio_irq_set.encode({
    flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index, start, count: fds.length, data,
  }));
}

/** A VFIO_DEVICE_FEATURE call: header flags plus payload; returns the payload after the call. */
export function feature(host: HostKernel, fd: number, flags: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const buf = vfio_device_feature.encode({ flags, data: payload });
  host.ioctl(fd, VFIO_DEVICE_FEATURE, buf);
  return buf.subarray(vfio_device_feature.size);
}

/** Set the migration state; returns the data fd (-1 when the arc opens no session). */
export function setMigState(host: HostKernel, fd: number, state: number): number {
  const out = feature(host, fd, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
    vfio_device_feature_mig_state.encode({ device_state: state, data_fd: -1 }));
  return vfio_device_feature_mig_state.decode(out).data_fd;
}

export function getMigState(host: HostKernel, fd: number): number {
  const out = feature(host, fd, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
    vfio_device_feature_mig_state.encode({}));
  return vfio_device_feature_mig_state.decode(out).device_state;
}

/** Expect `call` to fail with errno `code` (a HostError from the port). */
export function expectErrno(call: () => unknown, code: string): HostError {
  try {
    call();
  } catch (e) {
    expect(e).toBeInstanceOf(HostError);
    expect((e as HostError).errno).toBe(code);
    return e as HostError;
  }
  throw new Error(`expected ${code}, but the call succeeded`);
}

/** Read an eventfd's counter without blocking (0 when nothing was signalled). */
export function eventCount(host: SimHost, efd: number): bigint {
  const b = new Uint8Array(8);
  try {
    host.read(efd, b);
  } catch (e) {
    if (e instanceof HostError && e.errno === 'EAGAIN') return 0n;
    throw e;
  }
  return new DataView(b.buffer).getBigUint64(0, true);
}

/**
 * Open `bdf` through its cdev as if VFIO_DEVICE_BIND_IOMMUFD had bound it to `ctx` with `devid`
 * (white box until the cdev bind lands): `ctx` stands in for an iommufd context, answering
 * which devices are bound to it.
 */
export function openBoundCdev(host: SimHost, bdf: string, ctx: FakeIommufd, devid: number): number {
  const device = host.kernel.device(bdf);
  const file = new VfioDeviceFile(host.kernel, device, 'cdev');
  ctx.bound.set(device, devid);
  file.iommufd = { ctx: ctx as unknown as IommufdFile, devid }; // binding opens the device
  return host.kernel.fds.install(file);
}

/** The part of an iommufd context hot reset consults. */
export class FakeIommufd {
  readonly bound = new Map<SimDevice, number>();
  devidOf(device: SimDevice): number | undefined {
    return this.bound.get(device);
  }
}

/** Expect two byte arrays to be equal (fast for large device states, unlike a deep equality). */
export function expectSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength);
  const b = Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength);
  expect(a.byteLength).toBe(b.byteLength);
  expect(a.equals(b), 'bytes differ').toBe(true);
}
