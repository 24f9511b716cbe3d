// Function reset and PCI hot reset on the simulated host: VFIO_DEVICE_RESET, the affected
// devices of VFIO_DEVICE_GET_PCI_HOT_RESET_INFO (group ids, or devids for cdev-opened devices),
// and VFIO_DEVICE_PCI_HOT_RESET's proof of ownership.

import { describe, expect, it } from 'vitest';
import {
  O_RDWR, VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, VFIO_DEVICE_PCI_HOT_RESET, VFIO_DEVICE_RESET,
  VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_STOP, VFIO_PCI_DEVID_NOT_OWNED, VFIO_PCI_DEVID_OWNED,
  VFIO_PCI_HOT_RESET_FLAG_DEV_ID, VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED, vfio_device_info, vfio_pci_dependent_device,
  vfio_pci_hot_reset, vfio_pci_hot_reset_info,
} from '@vmmkit/core/uapi';
import { SimHost, type SimDeviceConfig } from '../src/index.js';
import { EDU_LIVENESS } from '../src/devices/edu.js';
import * as R from '../src/devices/nic-regs.js';
import {
  CONFIG, FakeIommufd, bar, expectErrno, getMigState, openBoundCdev, openDevice, read16, read32, setMigState, write16, write32,
} from './device-harness.js';

const A = '0000:00:03.0';
const B = '0000:00:04.0';
const C = '0000:00:05.0';
const OTHER_BUS = '0000:01:00.0';

function machine(extra: SimDeviceConfig[] = []) {
  return new SimHost({
    devices: [
      { bdf: A, model: 'edu', group: 3 },
      { bdf: B, model: 'nic', group: 4, migration: { flags: ['STOP_COPY'] } },
      { bdf: C, model: 'edu', group: 4 },
      { bdf: OTHER_BUS, model: 'edu', group: 9 },
      ...extra,
    ],
  });
}

function info(host: SimHost, fd: number, room = 8) {
  const buf = vfio_pci_hot_reset_info.encode({ argsz: 12 + room * 8 });
  const full = new Uint8Array(12 + room * 8);
  full.set(buf);
  host.ioctl(fd, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, full);
  const hdr = vfio_pci_hot_reset_info.decode(full);
  const devices = Array.from({ length: hdr.count }, (_, i) => vfio_pci_dependent_device.decode(full, 12 + i * 8));
  return { ...hdr, devices };
}

const hotReset = (host: SimHost, fd: number, groupFds: number[], argsz?: number, flags = 0) =>
  host.ioctl(fd, VFIO_DEVICE_PCI_HOT_RESET, vfio_pci_hot_reset.encode({ argsz, flags, count: groupFds.length, group_fds: groupFds }));

describe('VFIO_DEVICE_RESET', () => {
  it('resets the function, keeps config space, and is EINVAL for a device without a reset', () => {
    const host = new SimHost({ devices: [{ bdf: A, model: 'edu' }, { bdf: C, model: 'edu', resettable: false }] });
    const fd = openDevice(host, A);
    write16(host, fd, CONFIG + 4n, 0x0107);
    write32(host, fd, bar(0, EDU_LIVENESS), 0x12345678);
    expect(host.ioctl(fd, VFIO_DEVICE_RESET)).toBe(0);
    expect(read32(host, fd, bar(0, EDU_LIVENESS))).toBe(0);
    expect(read16(host, fd, CONFIG + 4n)).toBe(0x0107); // restored after the reset
    const noReset = openDevice(host, C);
    expectErrno(() => host.ioctl(noReset, VFIO_DEVICE_RESET), 'EINVAL');
  });
});

describe('function level reset through config space', () => {
  it('resets a PCIe device when the user writes Initiate FLR, which always reads back as zero', () => {
    const host = machine();
    const fd = openDevice(host, B);
    const devctl = CONFIG + 0x48n; // the NIC's PCIe capability sits at 0x40
    write32(host, fd, bar(0, R.NIC_RATE_PPS), 500);
    write16(host, fd, devctl, 0x8000 | 0x10);
    expect(read32(host, fd, bar(0, R.NIC_RATE_PPS))).toBe(0);
    expect(read16(host, fd, devctl)).toBe(0x10);
  });
});

describe('VFIO_DEVICE_GET_PCI_HOT_RESET_INFO', () => {
  it('lists every function on the same domain:bus with its IOMMU group, for a group-opened device', () => {
    const host = machine();
    const fd = openDevice(host, A);
    const r = info(host, fd);
    expect(r).toMatchObject({ flags: 0, count: 3 });
    expect(r.devices).toEqual([
      { group_id: 3, devid: 3, segment: 0, bus: 0, devfn: 0x18 },
      { group_id: 4, devid: 4, segment: 0, bus: 0, devfn: 0x20 },
      { group_id: 4, devid: 4, segment: 0, bus: 0, devfn: 0x28 },
    ]);
    expect(info(host, openDevice(host, OTHER_BUS)).devices).toEqual([{ group_id: 9, devid: 9, segment: 0, bus: 1, devfn: 0 }]);
  });

  it('answers ENOSPC with the count when the array does not fit, and EINVAL below the header', () => {
    const host = machine();
    const fd = openDevice(host, A);
    const buf = new Uint8Array(12 + 2 * 8);
    buf.set(vfio_pci_hot_reset_info.encode({ argsz: buf.byteLength, flags: 7 }));
    expectErrno(() => host.ioctl(fd, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, buf), 'ENOSPC');
    expect(vfio_pci_hot_reset_info.decode(buf)).toMatchObject({ flags: 0, count: 3 });
    expectErrno(() => host.ioctl(fd, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, vfio_pci_hot_reset_info.encode({ argsz: 11 })), 'EINVAL');
  });

  it('reports devids for a cdev-opened device: its own, OWNED for its group, NOT_OWNED for the rest', () => {
    const host = machine();
    const ctx = new FakeIommufd();
    const fd = openBoundCdev(host, B, ctx, 7);
    const r = info(host, fd);
    expect(r.flags).toBe(VFIO_PCI_HOT_RESET_FLAG_DEV_ID);
    expect(r.devices.map((d) => d.devid | 0)).toEqual([VFIO_PCI_DEVID_NOT_OWNED, 7, VFIO_PCI_DEVID_OWNED]);
    openBoundCdev(host, A, ctx, 9);
    const all = info(host, fd);
    expect(all.flags).toBe(VFIO_PCI_HOT_RESET_FLAG_DEV_ID | VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED);
    expect(all.devices.map((d) => d.devid)).toEqual([9, 7, VFIO_PCI_DEVID_OWNED]);
  });
});

describe('VFIO_DEVICE_PCI_HOT_RESET', () => {
  it('resets every device on the bus when the caller proves it owns all their groups', () => {
    const host = machine();
    const a = openDevice(host, A);
    const b = openDevice(host, B);
    write32(host, a, bar(0, EDU_LIVENESS), 1);
    write32(host, b, bar(0, R.NIC_RATE_PPS), 500);
    setMigState(host, b, VFIO_DEVICE_STATE_STOP);
    const groups = [host.open('/dev/vfio/3', O_RDWR), host.open('/dev/vfio/4', O_RDWR)];
    expect(hotReset(host, a, groups)).toBe(0);
    expect(read32(host, a, bar(0, EDU_LIVENESS))).toBe(0);
    expect(read32(host, b, bar(0, R.NIC_RATE_PPS))).toBe(0);
    expect(getMigState(host, b)).toBe(VFIO_DEVICE_STATE_RUNNING);
  });

  it('refuses without proof of every group, with bad fds, with a bad header, or with no fds at all', () => {
    const host = machine();
    const a = openDevice(host, A);
    write32(host, a, bar(0, EDU_LIVENESS), 1);
    const g3 = host.open('/dev/vfio/3', O_RDWR);
    const g4 = host.open('/dev/vfio/4', O_RDWR);
    expectErrno(() => hotReset(host, a, [g3]), 'EINVAL');
    expectErrno(() => hotReset(host, a, [g3, 99]), 'EBADF');
    expectErrno(() => hotReset(host, a, [g3, a]), 'EINVAL'); // a device fd is not a group
    expectErrno(() => hotReset(host, a, [g3, g4, g4, g4]), 'EINVAL'); // more fds than devices
    expectErrno(() => hotReset(host, a, []), 'EINVAL'); // empty arrays are for cdev-opened devices
    expectErrno(() => hotReset(host, a, [g3, g4], 11), 'EINVAL');
    expectErrno(() => hotReset(host, a, [g3, g4], undefined, 1), 'EINVAL');
    expect(read32(host, a, bar(0, EDU_LIVENESS))).toBe(0xffff_fffe); // nothing was reset
  });

  it('refuses when a function on the bus is not bound to vfio-pci', () => {
    const host = machine([{ bdf: '0000:00:06.0', model: 'edu', group: 6, driver: 'host' }]);
    const a = openDevice(host, A);
    const groups = [3, 4].map((g) => host.open(`/dev/vfio/${g}`, O_RDWR)); // group 6 has no VFIO node
    expectErrno(() => hotReset(host, a, groups), 'EINVAL');
    expect(info(host, a).devices.map((d) => d.group_id)).toEqual([3, 4, 4, 6]);
  });

  it('lets a cdev-opened device reset with an empty array when its iommufd owns every device', () => {
    const host = machine();
    const ctx = new FakeIommufd();
    const b = openBoundCdev(host, B, ctx, 7);
    write32(host, b, bar(0, R.NIC_RATE_PPS), 500);
    expectErrno(() => hotReset(host, b, []), 'EINVAL'); // A is not owned
    const g3 = host.open('/dev/vfio/3', O_RDWR);
    expectErrno(() => hotReset(host, b, [g3]), 'EINVAL'); // group fds are for group-opened devices
    openBoundCdev(host, A, ctx, 9);
    expect(hotReset(host, b, [])).toBe(0);
    expect(read32(host, b, bar(0, R.NIC_RATE_PPS))).toBe(0);
  });

  it('is ENOTTY for a mediated device', () => {
    const host = new SimHost({ devices: [{ uuid: '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001', model: 'edu' }] });
    const fd = openDevice(host, '83b8f4f2-509f-382f-3c1e-e6bfe0fa1001');
    expectErrno(() => info(host, fd), 'ENOTTY');
    host.ioctl(fd, VFIO_DEVICE_GET_INFO, vfio_device_info.encode({}));
  });
});
