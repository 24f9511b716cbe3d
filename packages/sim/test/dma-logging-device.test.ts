// Device DMA logging on the simulated host: START with user ranges and the core's rules, the
// device's pages written while logging, REPORT into user bitmaps of any page size (read and
// clear), STOP, and the errnos of each rule.

import { describe, expect, it } from 'vitest';
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT as REPORT, VFIO_DEVICE_FEATURE_DMA_LOGGING_START as START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP as STOP, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET, vfio_device_feature_dma_logging_control, vfio_device_feature_dma_logging_range,
  vfio_device_feature_dma_logging_report,
} from '@vmmkit/core/uapi';
import { SimHost } from '../src/index.js';
import * as R from '../src/devices/nic-regs.js';
import { anon, bar, enableBusMaster, expectErrno, feature, identityDma, openDevice, write32, write64 } from './device-harness.js';

const NIC = '0000:00:04.0';
const EDU = '0000:00:03.0';
const PAGE = 4096n;

function setup() {
  const host = new SimHost({
    devices: [{ bdf: NIC, model: 'nic', migration: { flags: ['STOP_COPY'], dmaLogging: true } }, { bdf: EDU, model: 'edu' }],
  });
  const fd = openDevice(host, NIC);
  enableBusMaster(host, fd);
  const ram = identityDma(host, NIC, 0n, 1 << 24);
  return { host, fd, ram };
}

function start(host: SimHost, fd: number, ranges: { iova: bigint; length: bigint }[], pageSize = PAGE): bigint {
  const table = anon(host, Math.max(ranges.length, 1) * 16);
  ranges.forEach((r, i) => table.bytes.set(vfio_device_feature_dma_logging_range.encode(r), i * 16));
  const out = feature(host, fd, VFIO_DEVICE_FEATURE_SET | START, vfio_device_feature_dma_logging_control.encode({
    page_size: pageSize, num_ranges: ranges.length, ranges: table.addr,
  }));
  return vfio_device_feature_dma_logging_control.decode(out).page_size;
}

/** REPORT over [iova, iova + length) at `pageSize`: the IOVAs of the bits set. */
function report(host: SimHost, fd: number, iova: bigint, length: bigint, pageSize = PAGE): bigint[] {
  const pages = Number((length + pageSize - 1n) / pageSize);
  const bitmap = anon(host, Math.ceil(pages / 64) * 8);
  feature(host, fd, VFIO_DEVICE_FEATURE_GET | REPORT, vfio_device_feature_dma_logging_report.encode({
    iova, length, page_size: pageSize, bitmap: bitmap.addr,
  }));
  const set: bigint[] = [];
  for (let i = 0; i < pages; i++) if (bitmap.bytes[i >> 3]! & (1 << (i & 7))) set.push(iova + BigInt(i) * pageSize);
  bitmap.unmap();
  return set;
}

/** Receive `packets` 2 KiB packets into a ring at `ring`. */
function receive(host: SimHost, fd: number, ring: bigint, packets: number): void {
  write64(host, fd, bar(0, R.NIC_RX_RING_BASE), ring);
  write32(host, fd, bar(0, R.NIC_RX_RING_SIZE), 256);
  write32(host, fd, bar(0, R.NIC_RATE_PPS), 1000);
  write32(host, fd, bar(0, R.NIC_CTRL), R.NIC_CTRL_RX_EN);
  host.advance(packets);
  write32(host, fd, bar(0, R.NIC_CTRL), 0);
}

describe('DMA logging', () => {
  it('reports exactly the pages the device wrote inside the logged ranges, then clears them', () => {
    const { host, fd } = setup();
    expect(start(host, fd, [{ iova: 0x10_0000n, length: 0x10_0000n }, { iova: 0x40_0000n, length: 0x1000n }])).toBe(PAGE);
    expect(host.census().objects.dma_logging).toBe(1);
    receive(host, fd, 0x10_0000n, 5); // 5 × 2 KiB: pages 0x100000..0x102000
    host.deviceDma(NIC, 0x40_0800n, new Uint8Array(16));
    host.deviceDma(NIC, 0x50_0000n, new Uint8Array(16)); // outside every range: not logged
    expect(report(host, fd, 0n, 0x100_0000n)).toEqual([0x10_0000n, 0x10_1000n, 0x10_2000n, 0x40_0000n]);
    expect(report(host, fd, 0n, 0x100_0000n)).toEqual([]);
  });

  it('reports at any page size: one bit covers several tracked pages, or a tracked page spans several bits', () => {
    const { host, fd } = setup();
    start(host, fd, [{ iova: 0n, length: 0x100_0000n }]);
    host.deviceDma(NIC, 0x3000n, new Uint8Array(4));
    host.deviceDma(NIC, 0x20_1000n, new Uint8Array(4));
    expect(report(host, fd, 0n, 0x40_0000n, 8192n)).toEqual([0x2000n, 0x20_0000n]);
    expect(report(host, fd, 0n, 0x40_0000n)).toEqual([]);
  });

  it('clears only the tracked pages a report fully covers', () => {
    const { host, fd } = setup();
    expect(start(host, fd, [{ iova: 0n, length: 0x100_0000n }], 0x20_0000n)).toBe(0x20_0000n);
    host.deviceDma(NIC, 0x30_0000n, new Uint8Array(4));
    const halfPage = Array.from({ length: 256 }, (_, i) => 0x20_0000n + BigInt(i) * PAGE);
    expect(report(host, fd, 0x20_0000n, 0x10_0000n)).toEqual(halfPage);
    expect(report(host, fd, 0x20_0000n, 0x20_0000n, 0x20_0000n)).toEqual([0x20_0000n]); // still dirty
    expect(report(host, fd, 0x20_0000n, 0x20_0000n, 0x20_0000n)).toEqual([]);
  });

  it('only sets bits: a report never clears what the user bitmap already holds', () => {
    const { host, fd } = setup();
    start(host, fd, [{ iova: 0n, length: 0x10_0000n }]);
    host.deviceDma(NIC, 0x1000n, new Uint8Array(1));
    const bitmap = anon(host, 8);
    bitmap.bytes[0] = 0x80;
    feature(host, fd, VFIO_DEVICE_FEATURE_GET | REPORT, vfio_device_feature_dma_logging_report.encode({
      iova: 0n, length: 0x4_0000n, page_size: PAGE, bitmap: bitmap.addr,
    }));
    expect(bitmap.bytes[0]).toBe(0x82);
  });

  it('chooses its own page size within what it supports and reports it back', () => {
    const { host, fd } = setup();
    expect(start(host, fd, [{ iova: 0n, length: 1n << 44n }], 1n << 44n)).toBe(1n << 30n);
    feature(host, fd, VFIO_DEVICE_FEATURE_SET | STOP);
    expect(start(host, fd, [{ iova: 0n, length: 0x100_0000n }], 0x3000n)).toBe(0x2000n);
  });

  it('stops logging: writes are no longer recorded and REPORT fails; STOP twice is fine', () => {
    const { host, fd } = setup();
    start(host, fd, [{ iova: 0n, length: 0x10_0000n }]);
    feature(host, fd, VFIO_DEVICE_FEATURE_SET | STOP);
    feature(host, fd, VFIO_DEVICE_FEATURE_SET | STOP);
    expect(host.census().objects.dma_logging).toBeUndefined();
    expectErrno(() => report(host, fd, 0n, 0x10_0000n), 'EINVAL');
    start(host, fd, [{ iova: 0n, length: 0x10_0000n }]);
    expect(report(host, fd, 0n, 0x10_0000n)).toEqual([]);
  });

  it('stops logging when the device is closed', () => {
    const { host, fd } = setup();
    start(host, fd, [{ iova: 0n, length: 0x10_0000n }]);
    host.close(fd);
    expect(host.census().objects.dma_logging).toBeUndefined();
  });
});

describe('DMA logging errors', () => {
  it('refuses START with no ranges, too many, unaligned, wrapping or overlapping ranges, and a second START', () => {
    const { host, fd } = setup();
    expectErrno(() => start(host, fd, []), 'EINVAL');
    expectErrno(() => start(host, fd, Array.from({ length: 257 }, (_, i) => ({ iova: BigInt(i) * 0x10000n, length: PAGE }))), 'E2BIG');
    expectErrno(() => start(host, fd, [{ iova: 0x800n, length: PAGE }]), 'EINVAL');
    expectErrno(() => start(host, fd, [{ iova: 0n, length: 0x800n }]), 'EINVAL');
    expectErrno(() => start(host, fd, [{ iova: 0xffff_ffff_ffff_f000n, length: PAGE }]), 'EOVERFLOW');
    expectErrno(() => start(host, fd, [{ iova: 0n, length: 0x2000n }, { iova: 0x1000n, length: PAGE }]), 'EINVAL');
    expectErrno(() => start(host, fd, [{ iova: 0n, length: 1n << 49n }]), 'EOPNOTSUPP');
    expect(host.census().objects.dma_logging).toBeUndefined();
    start(host, fd, Array.from({ length: 256 }, (_, i) => ({ iova: BigInt(i) * 0x10000n, length: PAGE }))); // merged inside the device
    expectErrno(() => start(host, fd, [{ iova: 0n, length: PAGE }]), 'EINVAL');
  });

  it('refuses START whose ranges pointer is not user memory, and the wrong GET/SET', () => {
    const { host, fd } = setup();
    expectErrno(() => feature(host, fd, VFIO_DEVICE_FEATURE_SET | START, vfio_device_feature_dma_logging_control.encode({
      page_size: PAGE, num_ranges: 1, ranges: 0x1000n,
    })), 'EFAULT');
    expectErrno(() => feature(host, fd, VFIO_DEVICE_FEATURE_GET | START, new Uint8Array(24)), 'EINVAL');
    expectErrno(() => feature(host, fd, VFIO_DEVICE_FEATURE_SET | START, new Uint8Array(16)), 'EINVAL');
    expectErrno(() => feature(host, fd, VFIO_DEVICE_FEATURE_SET | REPORT, new Uint8Array(32)), 'EINVAL');
    expectErrno(() => feature(host, fd, VFIO_DEVICE_FEATURE_GET | STOP), 'EINVAL');
    feature(host, fd, VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET | START);
  });

  it('refuses REPORT with a bad page size, a wrapping range, or a bitmap that is not writable user memory', () => {
    const { host, fd } = setup();
    start(host, fd, [{ iova: 0n, length: 0x10_0000n }]);
    expectErrno(() => report(host, fd, 0n, 0x10_0000n, 2048n), 'EINVAL');
    expectErrno(() => report(host, fd, 0n, 0x10_0000n, 12288n), 'EINVAL');
    expectErrno(() => report(host, fd, 0xffff_ffff_ffff_f000n, 0x2000n), 'EOVERFLOW');
    const small = anon(host, 8); // a page: its last 8 bytes are 64 pages' worth, for a report of 65
    expectErrno(() => feature(host, fd, VFIO_DEVICE_FEATURE_GET | REPORT, vfio_device_feature_dma_logging_report.encode({
      iova: 0n, length: 65n * PAGE, page_size: PAGE, bitmap: small.addr + PAGE - 8n,
    })), 'EFAULT');
  });

  it('is ENOTTY on a device configured without DMA logging', () => {
    const { host } = setup();
    const edu = openDevice(host, EDU);
    expectErrno(() => feature(host, edu, VFIO_DEVICE_FEATURE_PROBE | START), 'ENOTTY');
    expectErrno(() => feature(host, edu, VFIO_DEVICE_FEATURE_SET | STOP), 'ENOTTY');
    expectErrno(() => feature(host, edu, VFIO_DEVICE_FEATURE_GET | REPORT, new Uint8Array(32)), 'ENOTTY');
  });
});
