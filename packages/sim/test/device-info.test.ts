// VFIO_DEVICE_GET_INFO, GET_REGION_INFO (with the sparse mmap capability) and GET_IRQ_INFO of
// vfio-pci on the simulated host, with their argsz and index rules.

import { describe, expect, it } from 'vitest';
import {
  VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_FLAGS_RESET, VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_GET_REGION_INFO, VFIO_IRQ_INFO_AUTOMASKED, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_MASKABLE,
  VFIO_IRQ_INFO_NORESIZE, VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, VFIO_REGION_INFO_CAP_SPARSE_MMAP,
  VFIO_REGION_INFO_FLAG_CAPS, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
  vfio_device_info, vfio_irq_info, vfio_region_info, vfio_region_info_cap_sparse_mmap,
} from '@vmmkit/core/uapi';
import { SimHost } from '../src/index.js';
import { expectErrno, openDevice, regionInfo } from './device-harness.js';
import { plainModel } from './plain-model.js';

const EDU = '0000:00:03.0';
const NIC = '0000:00:04.0';
const machine = (resettable = true) => new SimHost({
  devices: [
    { bdf: EDU, model: 'edu', resettable },
    { bdf: NIC, model: 'nic', migration: { flags: ['STOP_COPY'] } },
  ],
});
const RW = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;

describe('VFIO_DEVICE_GET_INFO', () => {
  it('reports a PCI device with 9 regions and 5 IRQs, RESET only when a function reset works', () => {
    for (const resettable of [true, false]) {
      const host = machine(resettable);
      const fd = openDevice(host, EDU);
      const info = vfio_device_info.encode({});
      expect(host.ioctl(fd, VFIO_DEVICE_GET_INFO, info)).toBe(0);
      const v = vfio_device_info.decode(info);
      // realhost: flags 0x2 for edu on q35, which has no reset method there
      expect(v.flags).toBe(VFIO_DEVICE_FLAGS_PCI | (resettable ? VFIO_DEVICE_FLAGS_RESET : 0));
      expect([v.num_regions, v.num_irqs, v.cap_offset, v.argsz]).toEqual([9, 5, 0, 24]);
    }
  });

  it('accepts the 16-byte struct of old callers without touching cap_offset, and refuses less', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    const buf = vfio_device_info.encode({ argsz: 16, cap_offset: 0xdead });
    host.ioctl(fd, VFIO_DEVICE_GET_INFO, buf);
    expect(vfio_device_info.decode(buf)).toMatchObject({ argsz: 16, num_regions: 9, cap_offset: 0xdead });
    expectErrno(() => host.ioctl(fd, VFIO_DEVICE_GET_INFO, vfio_device_info.encode({ argsz: 15 })), 'EINVAL');
    expectErrno(() => host.ioctl(fd, VFIO_DEVICE_GET_INFO, new Uint8Array(8)), 'EFAULT');
  });

  it('answers EINVAL on a cdev that is not bound yet, as access_granted is false', () => {
    const host = machine();
    const fd = host.open('/dev/vfio/devices/vfio0', 2);
    expectErrno(() => host.ioctl(fd, VFIO_DEVICE_GET_INFO, vfio_device_info.encode({})), 'EINVAL');
    expectErrno(() => host.pread(fd, new Uint8Array(4), 7n << 40n), 'EINVAL');
    host.close(fd);
  });
});

describe('VFIO_DEVICE_GET_REGION_INFO', () => {
  it('describes edu: a 1 MiB register BAR0 reached by read/write, config of 256 bytes', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    expect(regionInfo(host, fd, 0)).toMatchObject({ flags: RW, size: 0x100000n, offset: 0n, cap_offset: 0 });
    expect(regionInfo(host, fd, 7)).toMatchObject({ flags: RW, size: 256n, offset: 7n << 40n });
    for (const index of [1, 2, 3, 4, 5, 6]) expect(regionInfo(host, fd, index)).toMatchObject({ flags: 0, size: 0n, offset: BigInt(index) << 40n });
  });

  it('describes the NIC: a 16 KiB register BAR0, a 64 KiB memory BAR2 mapped in two sparse areas, 4 KiB of PCIe config', () => {
    const host = machine();
    const fd = openDevice(host, NIC);
    expect(regionInfo(host, fd, 0)).toMatchObject({ flags: RW, size: 0x4000n, cap_offset: 0 });
    const bar2 = regionInfo(host, fd, 2);
    expect(bar2).toMatchObject({
      flags: RW | VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS, size: 0x10000n, offset: 2n << 40n, cap_offset: 32, argsz: 256,
    });
    const cap = vfio_region_info_cap_sparse_mmap.decode(bar2.bytes, 32);
    expect(cap).toMatchObject({ header: { id: VFIO_REGION_INFO_CAP_SPARSE_MMAP, version: 1, next: 0 }, nr_areas: 2 });
    expect(vfio_region_info_cap_sparse_mmap.readFlex(bar2.bytes, 2, 32)).toEqual([
      { offset: 0n, size: 0x4000n },
      { offset: 0x5000n, size: 0xb000n },
    ]);
    expect(regionInfo(host, fd, 7)).toMatchObject({ size: 4096n });
  });

  it('tells a caller whose argsz is too small for the capabilities how much to pass', () => {
    const host = machine();
    const fd = openDevice(host, NIC);
    const buf = vfio_region_info.encode({ index: 2 });
    host.ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, buf);
    expect(vfio_region_info.decode(buf)).toMatchObject({
      argsz: 32 + 16 + 2 * 16, cap_offset: 0, flags: RW | VFIO_REGION_INFO_FLAG_MMAP | VFIO_REGION_INFO_FLAG_CAPS, size: 0x10000n,
    });
  });

  it('chains the MSI-X mappable capability after the sparse one when the MSI-X BAR can be mapped', () => {
    const host = new SimHost({ devices: [{ bdf: EDU, model: () => msixPlainModel() }] });
    const fd = openDevice(host, EDU);
    const info = regionInfo(host, fd, 0);
    expect(info.flags & VFIO_REGION_INFO_FLAG_CAPS).toBeTruthy();
    const sparse = vfio_region_info_cap_sparse_mmap.decode(info.bytes, 32);
    expect(sparse.header).toEqual({ id: VFIO_REGION_INFO_CAP_SPARSE_MMAP, version: 1, next: 32 + 16 + 16 });
    expect(new DataView(info.bytes.buffer).getUint16(64, true)).toBe(VFIO_REGION_INFO_CAP_MSIX_MAPPABLE);
    expect(new DataView(info.bytes.buffer).getUint32(68, true)).toBe(0);
  });

  it('refuses the VGA region of a non-VGA device, an index past the last region and a short argsz', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    expectErrno(() => regionInfo(host, fd, 8), 'EINVAL');
    expectErrno(() => regionInfo(host, fd, 9), 'EINVAL');
    expectErrno(() => host.ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, vfio_region_info.encode({ argsz: 31 })), 'EINVAL');
  });
});

describe('VFIO_DEVICE_GET_IRQ_INFO', () => {
  const irqInfo = (host: SimHost, fd: number, index: number) => {
    const buf = vfio_irq_info.encode({ index });
    host.ioctl(fd, VFIO_DEVICE_GET_IRQ_INFO, buf);
    return vfio_irq_info.decode(buf);
  };

  it('reports edu: maskable automasked INTx, one MSI vector, no MSI-X, a request IRQ and no error IRQ', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    expect(irqInfo(host, fd, 0)).toMatchObject({ flags: VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED, count: 1 });
    expect(irqInfo(host, fd, 1)).toMatchObject({ flags: VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, count: 1 });
    expect(irqInfo(host, fd, 2)).toMatchObject({ flags: VFIO_IRQ_INFO_EVENTFD, count: 0 });
    expect(irqInfo(host, fd, 4)).toMatchObject({ flags: VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, count: 1 });
    expectErrno(() => irqInfo(host, fd, 3), 'EINVAL'); // edu is conventional PCI
  });

  it('reports the NIC: four MSI-X vectors that can grow, and the PCIe error IRQ', () => {
    const host = machine();
    const fd = openDevice(host, NIC);
    expect(irqInfo(host, fd, 2)).toMatchObject({ flags: VFIO_IRQ_INFO_EVENTFD, count: 4 });
    expect(irqInfo(host, fd, 3)).toMatchObject({ flags: VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_NORESIZE, count: 1 });
  });

  it('refuses an index past the last one and a short argsz', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    expectErrno(() => irqInfo(host, fd, 5), 'EINVAL');
    expectErrno(() => host.ioctl(fd, VFIO_DEVICE_GET_IRQ_INFO, vfio_irq_info.encode({ argsz: 12 })), 'EINVAL');
  });
});

/** The plain test model with an MSI-X capability whose table lives in its mappable BAR0. */
function msixPlainModel() {
  const model = plainModel();
  const config = model.config;
  config[0x06] = 0x10; // capability list
  config[0x34] = 0x40;
  config.set([0x11, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00], 0x40); // 1 vector, table 0x800
  const bars = [{ ...model.bars[0]!, mmapAreas: [{ offset: 0n, size: 0x800n }] }];
  return { ...model, config, bars, interrupts: { intx: false, msi: 0, msix: 1 } };
}
