// The kernel backends' device I/O seam (VfioKernelDeviceIo) over a device fd: every operation a
// device model or migration needs, the region offsets it learns, and errors naming the device.

import { describe, expect, it } from 'vitest';
import { HostError, VfioDevice, VfioError, VfioKernelDeviceIo } from '@vmmkit/core';
import {
  VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MIGRATION, VFIO_DEVICE_FEATURE_PROBE, VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX, VFIO_REGION_INFO_FLAG_MMAP, vfio_device_feature_migration,
} from '@vmmkit/core/uapi';
import { SimHost } from '../src/index.js';
import { EDU_ID, EDU_LIVENESS } from '../src/devices/edu.js';
import { openDevice } from './device-harness.js';

const EDU = '0000:00:03.0';

function attached(host: SimHost, name: string): VfioDevice {
  const device = new VfioDevice({ sysfsdev: `/sys/bus/pci/devices/${name}` }, undefined, (d) => new VfioKernelDeviceIo(host, d));
  device.fd = openDevice(host, name);
  return device;
}

const u32 = (b: Uint8Array): number => new DataView(b.buffer, b.byteOffset).getUint32(0, true);

describe('VfioKernelDeviceIo', () => {
  it('reads device and region info, and reaches config space and a BAR at the offsets region info gave', async () => {
    const host = new SimHost({ devices: [{ bdf: EDU, model: 'edu' }] });
    const { io } = attached(host, EDU);
    const info = await io.deviceInfo();
    expect(info.numRegions).toBeGreaterThan(VFIO_PCI_CONFIG_REGION_INDEX);
    const bar0 = await io.regionInfo(VFIO_PCI_BAR0_REGION_INDEX);
    expect(bar0.size).toBe(0x10_0000n);
    // A mappable region names the file to map it from: the device fd itself.
    if (bar0.flags & VFIO_REGION_INFO_FLAG_MMAP) expect(bar0.mmapFd).toBeGreaterThanOrEqual(0);
    expect(u32(await io.regionRead(VFIO_PCI_CONFIG_REGION_INDEX, 0n, 4))).toBe(0x11e8_1234);
    expect(u32(await io.regionRead(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_ID), 4))).toBe(0x010000ed);
    await io.regionWrite(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_LIVENESS), Uint8Array.of(0x78, 0x56, 0x34, 0x12));
    expect(u32(await io.regionRead(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_LIVENESS), 4))).toBe(~0x1234_5678 >>> 0);
  });

  it('wires and unwires an eventfd through SET_IRQS, reads IRQ info and resets', async () => {
    const host = new SimHost({ devices: [{ bdf: EDU, model: 'edu' }] });
    const { io } = attached(host, EDU);
    expect(await io.irqInfo(VFIO_PCI_MSI_IRQ_INDEX)).toMatchObject({ index: VFIO_PCI_MSI_IRQ_INDEX, count: 1 });
    const efd = host.eventfd(0, 0);
    await io.setIrqs({ index: VFIO_PCI_MSI_IRQ_INDEX, start: 0, count: 1, flags: VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, eventfds: [efd] });
    await io.setIrqs({ index: VFIO_PCI_MSI_IRQ_INDEX, start: 0, count: 0, flags: VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER });
    host.close(efd);
    await io.reset();
  });

  it('answers a feature GET and keeps the errno of one the device lacks', async () => {
    const host = new SimHost({ devices: [{ bdf: EDU, model: 'edu' }] });
    const edu = attached(host, EDU);
    const refused = await edu.io.feature(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION, vfio_device_feature_migration.encode()).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(VfioError);
    expect((refused as VfioError).errno).toBe('ENOTTY');
    expect((refused as VfioError).message).toContain(EDU);
    await expect(edu.io.feature(VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION)).rejects.toMatchObject({ errno: 'ENOTTY' });
  });

  it('names the device and the errno when the fd is gone', async () => {
    const host = new SimHost({ devices: [{ bdf: EDU, model: 'edu' }] });
    const device = attached(host, EDU);
    host.close(device.fd);
    const error = await device.io.regionRead(VFIO_PCI_CONFIG_REGION_INDEX, 0n, 4).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(VfioError);
    expect(error).toMatchObject({ errno: 'EBADF', device: EDU });
    expect((error as VfioError).cause).toBeInstanceOf(HostError);
  });

  it('a device made without an I/O says so', () => {
    expect(() => new VfioDevice({ sysfsdev: `/sys/bus/pci/devices/${EDU}` }).io).toThrow(/made without an I\/O/);
  });
});
