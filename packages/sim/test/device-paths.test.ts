// The device side reached through the real VFIO paths of the simulated host, as the realhost
// probe does on Linux: a group in a type1 container (VFIO_GROUP_GET_DEVICE_FD) and a cdev bound
// to an iommufd IOAS; edu DMA through each, and hot reset with group fds and with devids.

import { describe, expect, it } from 'vitest';
import {
  O_RDWR, VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, VFIO_DEVICE_PCI_HOT_RESET,
  VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE, VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_SET_CONTAINER,
  VFIO_IOMMU_MAP_DMA, VFIO_PCI_HOT_RESET_FLAG_DEV_ID, VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED, VFIO_SET_IOMMU,
  VFIO_TYPE1v2_IOMMU, vfio_device_info, vfio_iommu_type1_dma_map, vfio_pci_dependent_device, vfio_pci_hot_reset,
  vfio_pci_hot_reset_info,
} from '@vmmkit/core/uapi';
import { SimHost } from '../src/index.js';
import {
  EDU_DMA_CMD, EDU_DMA_COUNT, EDU_DMA_DST, EDU_DMA_RUN, EDU_DMA_SRC, EDU_DMA_START, EDU_DMA_TO_PCI, EDU_ID, EDU_LIVENESS,
} from '../src/devices/edu.js';
import { CONFIG, anon, bar, expectErrno, read16, read32, write16, write32, write64 } from './device-harness.js';
import { Cdev, Iommufd } from './iommufd-helpers.js';

const EDU = '0000:00:01.0';
const EDU2 = '0000:00:02.0';
const IOVA = 0x100000n;
const machine = () => new SimHost({ devices: [{ bdf: EDU, model: 'edu', group: 1 }, { bdf: EDU2, model: 'edu', group: 2 }] });

/** The realhost probe's edu round trip: 2048 bytes RAM -> edu -> RAM, polling the command register. */
function eduRoundTrip(host: SimHost, fd: number, ram: Uint8Array): void {
  expect(read32(host, fd, bar(0, EDU_ID))).toBe(0x010000ed);
  expect(read16(host, fd, CONFIG + 4n)).toBe(0x0103);
  write16(host, fd, CONFIG + 4n, 0x0107);
  const pattern = Uint8Array.from({ length: 2048 }, (_, i) => (i * 13) & 0xff);
  ram.set(pattern, 0);
  const run = (src: bigint, dst: bigint, cmd: number) => {
    write64(host, fd, bar(0, EDU_DMA_SRC), src);
    write64(host, fd, bar(0, EDU_DMA_DST), dst);
    write64(host, fd, bar(0, EDU_DMA_COUNT), 2048n);
    write32(host, fd, bar(0, EDU_DMA_CMD), cmd | EDU_DMA_RUN);
    while (read32(host, fd, bar(0, EDU_DMA_CMD)) & EDU_DMA_RUN);
  };
  run(IOVA, BigInt(EDU_DMA_START), 0);
  run(BigInt(EDU_DMA_START), IOVA + 0x5000n, EDU_DMA_TO_PCI);
  expect(ram.subarray(0x5000, 0x5000 + 2048)).toEqual(pattern);
}

function legacyDevice(host: SimHost, bdf: string, groupId: number) {
  const container = host.open('/dev/vfio/vfio', O_RDWR);
  const group = host.open(`/dev/vfio/${groupId}`, O_RDWR);
  const fdArg = new Uint8Array(4);
  new DataView(fdArg.buffer).setInt32(0, container, true);
  host.ioctl(group, VFIO_GROUP_SET_CONTAINER, fdArg);
  host.ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU);
  const device = host.ioctl(group, VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${bdf}\0`));
  return { container, group, device };
}

describe('through a group in a type1 container', () => {
  it('hands out a device fd that is open at once, and runs the realhost edu probe', () => {
    const host = machine();
    const { container, group, device } = legacyDevice(host, EDU, 1);
    expect(host.census().objects.device_open).toBe(1);
    const info = vfio_device_info.encode({});
    host.ioctl(device, VFIO_DEVICE_GET_INFO, info);
    expect(vfio_device_info.decode(info)).toMatchObject({ num_regions: 9, num_irqs: 5 });
    const ram = anon(host, 16 * 4096);
    host.ioctl(container, VFIO_IOMMU_MAP_DMA, vfio_iommu_type1_dma_map.encode({
      flags: VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, vaddr: ram.addr, iova: IOVA, size: 0x10000n,
    }));
    eduRoundTrip(host, device, ram.bytes);
    const second = host.ioctl(group, VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${EDU}\0`));
    write32(host, second, bar(0, EDU_LIVENESS), 1);
    host.close(device);
    expect(read32(host, second, bar(0, EDU_LIVENESS))).toBe(0xffff_fffe); // the device stayed open
    for (const fd of [second, group, container]) host.close(fd);
    ram.unmap();
    expect(host.census()).toEqual({ fds: 0, objects: {} });
  });

  it('hot-resets the bus with the group fds of every affected device', () => {
    const host = machine();
    const a = legacyDevice(host, EDU, 1);
    const b = legacyDevice(host, EDU2, 2);
    write32(host, a.device, bar(0, EDU_LIVENESS), 1);
    const reset = (groups: number[]) =>
      host.ioctl(a.device, VFIO_DEVICE_PCI_HOT_RESET, vfio_pci_hot_reset.encode({ count: groups.length, group_fds: groups }));
    expectErrno(() => reset([a.group]), 'EINVAL');
    expect(reset([a.group, b.group])).toBe(0);
    expect(read32(host, a.device, bar(0, EDU_LIVENESS))).toBe(0);
  });
});

describe('through a cdev bound to an iommufd', () => {
  it('is EINVAL until bound, then opens the device and runs the realhost edu probe through an IOAS', () => {
    const host = machine();
    const io = new Iommufd(host);
    const ioas = io.ioasAlloc();
    const ram = anon(host, 16 * 4096);
    io.map(ioas, ram.addr, 0x10000n, IOVA);
    const dev = new Cdev(host, 0);
    expectErrno(() => host.ioctl(dev.fd, VFIO_DEVICE_GET_INFO, vfio_device_info.encode({})), 'EINVAL');
    dev.bind(io.fd);
    expect(host.census().objects.device_open).toBe(1);
    dev.attach(ioas);
    eduRoundTrip(host, dev.fd, ram.bytes);
    dev.close();
    io.close();
    ram.unmap();
    expect(host.census()).toEqual({ fds: 0, objects: {} });
  });

  it('reports devids and hot-resets with an empty array once one iommufd owns the whole bus', () => {
    const host = machine();
    const io = new Iommufd(host);
    const a = new Cdev(host, 0);
    const b = new Cdev(host, 1);
    const devidA = a.bind(io.fd);
    const infoOf = () => {
      const buf = new Uint8Array(12 + 4 * 8);
      buf.set(vfio_pci_hot_reset_info.encode({ argsz: buf.byteLength }));
      host.ioctl(a.fd, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, buf);
      const hdr = vfio_pci_hot_reset_info.decode(buf);
      return { flags: hdr.flags, devids: Array.from({ length: hdr.count }, (_, i) => vfio_pci_dependent_device.decode(buf, 12 + 8 * i).devid | 0) };
    };
    expect(infoOf()).toEqual({ flags: VFIO_PCI_HOT_RESET_FLAG_DEV_ID, devids: [devidA, -1] });
    const reset = () => host.ioctl(a.fd, VFIO_DEVICE_PCI_HOT_RESET, vfio_pci_hot_reset.encode({ count: 0 }));
    expectErrno(reset, 'EINVAL');
    const devidB = b.bind(io.fd);
    expect(infoOf()).toEqual({ flags: VFIO_PCI_HOT_RESET_FLAG_DEV_ID | VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED, devids: [devidA, devidB] });
    write32(host, b.fd, bar(0, EDU_LIVENESS), 1);
    expect(reset()).toBe(0);
    expect(read32(host, b.fd, bar(0, EDU_LIVENESS))).toBe(0);
  });
});
