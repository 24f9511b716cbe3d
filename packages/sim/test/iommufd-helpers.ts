// Test helpers for the IOMMU side of a host (SimHost, or LinuxHost in the kernel tier), in the
// rhythm of the kernel selftests' iommufd_utils.h: each ioctl has an ok helper returning what the
// kernel wrote back, and `fails(code, ...)` checks the errno of a call that must fail.

import { expect } from 'vitest';
import { HostError, type HostMapping, type HostKernel } from '@vmmkit/core';
import {
  IOMMU_HWPT_GET_DIRTY_BITMAP, IOMMU_HWPT_SET_DIRTY_TRACKING, IOMMU_IOAS_ALLOC, IOMMU_IOAS_IOVA_RANGES,
  IOMMU_IOAS_MAP, IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, IOMMU_IOAS_UNMAP,
  IOMMU_DESTROY, IOMMU_HWPT_ALLOC, IOMMU_GET_HW_INFO, MAP_ANONYMOUS, MAP_NORESERVE, MAP_PRIVATE, O_RDWR, PROT_READ,
  PROT_WRITE, VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_DETACH_IOMMUFD_PT, iommu_destroy,
  iommu_hw_info, iommu_hwpt_alloc, iommu_hwpt_get_dirty_bitmap, iommu_hwpt_set_dirty_tracking, iommu_ioas_alloc,
  iommu_ioas_iova_ranges, iommu_ioas_map, iommu_ioas_unmap, iommu_iova_range, vfio_device_attach_iommufd_pt,
  vfio_device_bind_iommufd, vfio_device_detach_iommufd_pt, type StructInput, type StructMembers, type StructType,
  type StructValue, IOMMU_TEST_CMD, IOMMU_TEST_OP_DIRTY, IOMMU_TEST_OP_MOCK_DOMAIN, IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS,
  IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, iommu_test_cmd, VFIO_CHECK_EXTENSION, VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE, VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_SET_CONTAINER, VFIO_IOMMU_DIRTY_PAGES,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA,
  VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU, vfio_bitmap, vfio_info_cap_header, vfio_iommu_type1_dirty_bitmap,
  vfio_iommu_type1_dirty_bitmap_get, vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap, vfio_iommu_type1_info,
  type FdKind,
} from '@vmmkit/core/uapi';
import { SimHost, type SimHostConfig } from '../src/index.js';

const isSimHost = (host: HostKernel): boolean => host instanceof SimHost;
import { plainModel } from './plain-model.js';

export const PAGE = 4096n;
export const RW = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

/** The standard machine: two PCI functions behind a dirty-tracking VT-d, one behind a second unit, an mdev. */
export const MACHINE: SimHostConfig = {
  iommus: [{ id: 'iommu0', dirtyTracking: true, awBits: 39 }, { id: 'iommu1', awBits: 48 }],
  devices: [
    { bdf: '0000:00:03.0', model: plainModel, iommu: 'iommu0', group: 3 },
    { bdf: '0000:00:04.0', model: plainModel, iommu: 'iommu0', group: 4 },
    { bdf: '0000:00:05.0', model: plainModel, iommu: 'iommu1', group: 5 },
    { uuid: '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001', model: plainModel, group: 9 },
  ],
};
export const MDEV = '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001';

/** Anonymous read/write memory (MAP_NORESERVE beyond 4 GiB). */
export function anon(host: HostKernel, length: number | bigint, prot = PROT_READ | PROT_WRITE): HostMapping {
  const n = Number(length);
  return host.mmap(n, prot, MAP_PRIVATE | MAP_ANONYMOUS | (n > 2 ** 32 ? MAP_NORESERVE : 0), -1, 0n);
}

/**
 * Anonymous read/write memory whose next page is certainly not accessible, for "the user range runs
 * past the end" cases. SimHost leaves an unmapped guard after every mapping. Linux allocates top-down,
 * each new mapping abutting the one above it, so the page after a fresh buffer is usually somebody's
 * memory: there a PROT_NONE page is mapped first and the buffer taken once it lands right below it
 * (each miss fills a hole, so few tries are needed). `release` unmaps everything it mapped.
 */
export function anonBeforeHole(host: HostKernel, length: bigint): { buf: HostMapping; release(): void } {
  const mapped: HostMapping[] = [];
  const release = (): void => {
    for (const m of mapped.splice(0)) m.unmap();
  };
  if (isSimHost(host)) {
    const buf = anon(host, length);
    return { buf, release: () => buf.unmap() };
  }
  for (let tries = 0; tries < 64; tries++) {
    const guard = anon(host, PAGE, 0 /* PROT_NONE */);
    const buf = anon(host, length);
    mapped.push(guard, buf);
    if (buf.addr + length === guard.addr) return { buf, release };
  }
  release();
  throw new Error(`no buffer of ${length} bytes landed below a PROT_NONE page in 64 tries`);
}

/** EXPECT_ERRNO: the call fails with `code`; returns the error for more checks. */
export function fails(code: string, call: () => unknown): HostError {
  let caught: unknown;
  try {
    call();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected ${code}`).toBeInstanceOf(HostError);
  expect((caught as HostError).errno, String((caught as HostError).cause ?? caught)).toBe(code);
  return caught as HostError;
}

/** Issue an ioctl with a struct built from `values`; returns the struct as the kernel left it. */
export function call<D extends StructMembers>(
  host: HostKernel, fd: number, request: number, struct: StructType<D>, values: StructInput<D> = {},
): StructValue<D> {
  const bytes = struct.encode(values);
  host.ioctl(fd, request, bytes);
  return struct.decode(bytes);
}

/** Set Bus Master Enable in a device's command register, as a driver in the guest would. */
export function busMaster(host: SimHost, name: string): void {
  host.kernel.device(name).model.config[4] |= 0x4;
}

/** An open /dev/iommu with the selftests' test_ioctl_* helpers. */
export class Iommufd<H extends HostKernel = SimHost> {
  readonly fd: number;

  constructor(readonly host: H) {
    this.fd = host.open('/dev/iommu', O_RDWR);
  }

  ioasAlloc(): number {
    return call(this.host, this.fd, IOMMU_IOAS_ALLOC, iommu_ioas_alloc).out_ioas_id;
  }

  /** IOMMU_IOAS_MAP at a fixed IOVA (or a kernel-chosen one when `iova` is undefined); returns the IOVA. */
  map(ioas: number, va: bigint, length: bigint, iova?: bigint, flags = RW): bigint {
    const fixed = iova === undefined ? 0 : IOMMU_IOAS_MAP_FIXED_IOVA;
    return call(this.host, this.fd, IOMMU_IOAS_MAP, iommu_ioas_map, { ioas_id: ioas, user_va: va, length, iova: iova ?? 0n, flags: flags | fixed }).iova;
  }

  /** IOMMU_IOAS_UNMAP; returns the length unmapped. */
  unmap(ioas: number, iova: bigint, length: bigint): bigint {
    return call(this.host, this.fd, IOMMU_IOAS_UNMAP, iommu_ioas_unmap, { ioas_id: ioas, iova, length }).length;
  }

  destroy(id: number): void {
    call(this.host, this.fd, IOMMU_DESTROY, iommu_destroy, { id });
  }

  hwptAlloc(devId: number, ptId: number, flags = 0): number {
    return call(this.host, this.fd, IOMMU_HWPT_ALLOC, iommu_hwpt_alloc, { dev_id: devId, pt_id: ptId, flags }).out_hwpt_id;
  }

  setDirty(hwpt: number, enable: boolean): void {
    call(this.host, this.fd, IOMMU_HWPT_SET_DIRTY_TRACKING, iommu_hwpt_set_dirty_tracking, { hwpt_id: hwpt, flags: enable ? 1 : 0 });
  }

  getDirty(hwpt: number, iova: bigint, length: bigint, pageSize: bigint, data: bigint, flags = 0): void {
    call(this.host, this.fd, IOMMU_HWPT_GET_DIRTY_BITMAP, iommu_hwpt_get_dirty_bitmap, { hwpt_id: hwpt, iova, length, page_size: pageSize, data, flags });
  }

  hwInfo(devId: number, data = 0n, dataLen = 0) {
    return call(this.host, this.fd, IOMMU_GET_HW_INFO, iommu_hw_info, { dev_id: devId, data_uptr: data, data_len: dataLen });
  }

  /** IOMMU_IOAS_IOVA_RANGES with room for 16 ranges. */
  ranges(ioas: number): { start: bigint; last: bigint }[] {
    const buf = anon(this.host, 16 * iommu_iova_range.size);
    try {
      const out = call(this.host, this.fd, IOMMU_IOAS_IOVA_RANGES, iommu_ioas_iova_ranges, { ioas_id: ioas, num_iovas: 16, allowed_iovas: buf.addr });
      return Array.from({ length: out.num_iovas }, (_, i) => iommu_iova_range.decode(buf.bytes, i * iommu_iova_range.size));
    } finally {
      buf.unmap();
    }
  }

  close(): void {
    this.host.close(this.fd);
  }
}

/** A device cdev (/dev/vfio/devices/vfio<N>) with the bind/attach/detach ioctls. */
export class Cdev<H extends HostKernel = SimHost> {
  readonly fd: number;

  constructor(readonly host: H, index: number) {
    this.fd = host.open(`/dev/vfio/devices/vfio${index}`, O_RDWR);
  }

  bind(iommufd: number): number {
    return call(this.host, this.fd, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd, { iommufd }).out_devid;
  }

  attach(ptId: number): number {
    return call(this.host, this.fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, vfio_device_attach_iommufd_pt, { pt_id: ptId }).pt_id;
  }

  detach(): void {
    call(this.host, this.fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, vfio_device_detach_iommufd_pt);
  }

  close(): void {
    this.host.close(this.fd);
  }
}

/** Bits set in a little-endian bitmap, as indices. */
export function setBits(bytes: Uint8Array, count: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) if (bytes[i >> 3]! & (1 << (i & 7))) out.push(i);
  return out;
}

/** A fresh machine. */
export function machine(config: SimHostConfig = MACHINE): SimHost {
  return new SimHost(config);
}

/** IOMMU_TEST_CMD: one selftest op with its union member; returns the struct as the kernel left it. */
export function testCmd(io: Iommufd<HostKernel>, op: number, id: number, member: Parameters<typeof iommu_test_cmd.encode>[0] = {}) {
  return call(io.host, io.fd, IOMMU_TEST_CMD, iommu_test_cmd, { op, id, ...member });
}

/** test_cmd_mock_domain(_flags): a mock device attached to `pt` (an IOAS or a HWPT). */
export function mockDomain(io: Iommufd<HostKernel>, pt: number, devFlags?: number): { stdev: number; hwpt: number; idev: number } {
  const out = devFlags === undefined
    ? testCmd(io, IOMMU_TEST_OP_MOCK_DOMAIN, pt).mock_domain
    : testCmd(io, IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, pt, { mock_domain_flags: { dev_flags: devFlags } }).mock_domain_flags;
  return { stdev: out.out_stdev_id, hwpt: out.out_hwpt_id, idev: out.out_idev_id };
}

/** test_cmd_mock_domain_replace: returns the pt_id the kernel wrote back. */
export function mockReplace(io: Iommufd<HostKernel>, stdev: number, pt: number): number {
  return testCmd(io, IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, stdev, { mock_domain_replace: { pt_id: pt } }).mock_domain_replace.pt_id;
}

/** test_cmd_mock_domain_set_dirty: marks the pages of a user bitmap dirty; returns out_nr_dirty. */
export function mockSetDirty(io: Iommufd<HostKernel>, hwpt: number, length: bigint, iova: bigint, pageSize: bigint, uptr: bigint): bigint {
  return testCmd(io, IOMMU_TEST_OP_DIRTY, hwpt, { dirty: { flags: 0, iova, length, page_size: pageSize, uptr, out_nr_dirty: 0n } }).dirty.out_nr_dirty;
}

/** A legacy VFIO container (/dev/vfio/vfio) with its groups: the type1 ioctls as helpers. */
export class Legacy<H extends HostKernel = SimHost> {
  readonly container: number;

  constructor(readonly host: H, container?: number) {
    this.container = container ?? host.open('/dev/vfio/vfio', O_RDWR);
  }

  /** Open /dev/vfio/<n> and set it to this container. */
  group(n: number): number {
    const fd = this.host.open(`/dev/vfio/${n}`, O_RDWR);
    setContainer(this.host, fd, this.container);
    return fd;
  }

  setIommu(type = VFIO_TYPE1v2_IOMMU): void {
    this.host.ioctl(this.container, VFIO_SET_IOMMU, type);
  }

  map(vaddr: bigint, iova: bigint, size: bigint, flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE): void {
    call(this.host, this.container, VFIO_IOMMU_MAP_DMA, vfio_iommu_type1_dma_map, { vaddr, iova, size, flags });
  }

  /** VFIO_IOMMU_UNMAP_DMA, with a struct vfio_bitmap for GET_DIRTY_BITMAP; returns the size unmapped. */
  unmap(iova: bigint, size: bigint, flags = 0, bitmap?: { pgsize: bigint; size: bigint; data: bigint }): bigint {
    const data = bitmap ? vfio_bitmap.encode(bitmap) : new Uint8Array(0);
    const bytes = vfio_iommu_type1_dma_unmap.encode({ flags, iova, size, data });
    this.host.ioctl(this.container, VFIO_IOMMU_UNMAP_DMA, bytes);
    return vfio_iommu_type1_dma_unmap.decode(bytes).size;
  }

  /** VFIO_IOMMU_DIRTY_PAGES START or STOP. */
  dirty(flags: number): void {
    this.host.ioctl(this.container, VFIO_IOMMU_DIRTY_PAGES, vfio_iommu_type1_dirty_bitmap.encode({ flags }));
  }

  /** VFIO_IOMMU_DIRTY_PAGES GET_BITMAP of [iova, +size) into `data`. */
  getBitmap(iova: bigint, size: bigint, bitmap: { pgsize: bigint; size: bigint; data: bigint }): void {
    const data = vfio_iommu_type1_dirty_bitmap_get.encode({ iova, size, bitmap });
    const bytes = vfio_iommu_type1_dirty_bitmap.encode({ flags: VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, data });
    this.host.ioctl(this.container, VFIO_IOMMU_DIRTY_PAGES, bytes);
  }

  checkExtension(ext: number): number {
    return this.host.ioctl(this.container, VFIO_CHECK_EXTENSION, ext);
  }
}

/** VFIO_GROUP_SET_CONTAINER: the argument points to the container (or iommufd) fd. */
export function setContainer(host: HostKernel, groupFd: number, containerFd: number): void {
  const arg = new Uint8Array(4);
  new DataView(arg.buffer).setInt32(0, containerFd, true);
  host.ioctl(groupFd, VFIO_GROUP_SET_CONTAINER, arg);
}

/** VFIO_GROUP_GET_DEVICE_FD by device name; returns the new fd. */
export function groupDeviceFd(host: HostKernel, groupFd: number, name: string): number {
  return host.ioctl(groupFd, VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${name}\0`));
}

/**
 * VFIO_IOMMU_GET_INFO with `argsz` (in a buffer of at least the struct's size, as a caller's
 * struct would be): the fixed part as the kernel left it and the capability chain.
 */
export function type1Info(host: HostKernel, fd: number, argsz = 4096) {
  const bytes = new Uint8Array(Math.max(argsz, vfio_iommu_type1_info.size));
  new DataView(bytes.buffer).setUint32(0, argsz, true);
  host.ioctl(fd, VFIO_IOMMU_GET_INFO, bytes);
  const info = vfio_iommu_type1_info.decode(bytes);
  const caps = new Map<number, { offset: number; version: number }>();
  for (let at = info.cap_offset; at; ) {
    const header = vfio_info_cap_header.decode(bytes, at);
    caps.set(header.id, { offset: at, version: header.version });
    at = header.next;
  }
  return { info, caps, bytes };
}

/** What a flow step can use: the host, and the fds and mappings the flow has made so far. */
export interface FlowState {
  readonly host: SimHost;
  readonly fds: number[];
  readonly maps: HostMapping[];
  readonly v: Record<string, number | bigint>;
}

/** One ioctl of a flow (`on` tells apart VFIO numbers that several fd kinds share). */
export interface FlowStep {
  readonly name: string;
  readonly ioctl: number;
  readonly on?: FdKind;
  readonly run: (s: FlowState) => void;
}

/**
 * Run `steps` on a fresh host with a fault injected into step `at`: the step must fail with the
 * injected errno. Then either give up there (`retry` false) or retry the step and finish the flow
 * (a failed call changed nothing, so the retry succeeds), and clean up as a caller would: close
 * every fd and unmap every mapping, newest first. The census must be back where it started.
 */
export function runWithFault(make: () => SimHost, steps: readonly FlowStep[], at: number, retry: boolean): void {
  const host = make();
  const start = host.census();
  const s: FlowState = { host, fds: [], maps: [], v: {} };
  const target = steps[at]!;
  const nth = steps.slice(0, at + 1).filter((x) => x.ioctl === target.ioctl && x.on === target.on).length;
  host.injectFault({ ioctl: target.ioctl, errno: 'EIO', nth, on: target.on });
  steps.slice(0, at).forEach((step) => step.run(s));
  fails('EIO', () => target.run(s));
  if (retry) steps.slice(at).forEach((step) => step.run(s));
  for (const fd of s.fds.reverse()) host.close(fd);
  for (const m of s.maps.reverse()) m.unmap();
  expect(host.census(), `fault in ${target.name}`).toEqual(start);
}
