// Fault injection on every device ioctl of the simulated host: the call fails with the injected
// errno before anything changes, the retry succeeds, and closing everything returns the census
// to where it started. Also: closing a device undoes everything it held.

import { describe, expect, it } from 'vitest';
import {
  EFD_NONBLOCK, MAP_SHARED, O_RDWR, PROT_READ, VFIO_DEVICE_FEATURE, VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_IRQ_INFO,
  VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, VFIO_DEVICE_GET_REGION_INFO, VFIO_DEVICE_PCI_HOT_RESET, VFIO_DEVICE_RESET,
  VFIO_DEVICE_SET_IRQS, VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_RUNNING, VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_MIG_GET_PRECOPY_INFO, VFIO_PCI_ERR_IRQ_INDEX,
  VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_REQ_IRQ_INDEX, vfio_device_feature,
  vfio_device_feature_dma_logging_control, vfio_device_feature_dma_logging_range, vfio_device_feature_mig_state,
  vfio_device_info, vfio_irq_info, vfio_irq_set, vfio_pci_hot_reset, vfio_pci_hot_reset_info, vfio_precopy_info,
  vfio_region_info,
} from '@vmmkit/core/uapi';
import { SimHost } from '../src/index.js';
import { anon, bar, expectErrno, getMigState, openDevice, setIrqEventfds, setMigState } from './device-harness.js';

const NIC = '0000:00:04.0';
const EDU = '0000:00:03.0';

function machine() {
  return new SimHost({
    devices: [
      { bdf: EDU, model: 'edu', group: 3 },
      { bdf: NIC, model: 'nic', group: 4, migration: { flags: ['STOP_COPY', 'P2P', 'PRE_COPY'], dmaLogging: true } },
    ],
  });
}

const irqSet = (index: number, fds: number[], action = VFIO_IRQ_SET_ACTION_TRIGGER) => {
  const data = new Uint8Array(new Int32Array(fds).buffer);
  return vfio_irq_set.encode({ flags: VFIO_IRQ_SET_DATA_EVENTFD | action, index, start: 0, count: fds.length, data });
};

describe('fault injection on device ioctls', () => {
  it('fails each ioctl with the injected errno, changing nothing, and the retry works', () => {
    const host = machine();
    const start = host.census();
    const fd = openDevice(host, NIC);
    const efd = host.eventfd(0, EFD_NONBLOCK);
    const groups = [host.open('/dev/vfio/3', O_RDWR), host.open('/dev/vfio/4', O_RDWR)];
    const ranges = anon(host, 16);
    ranges.bytes.set(vfio_device_feature_dma_logging_range.encode({ iova: 0n, length: 0x10_0000n }));
    const calls: [string, number, () => Uint8Array | number][] = [
      ['GET_INFO', VFIO_DEVICE_GET_INFO, () => vfio_device_info.encode({})],
      ['GET_REGION_INFO', VFIO_DEVICE_GET_REGION_INFO, () => vfio_region_info.encode({ index: 0 })],
      ['GET_IRQ_INFO', VFIO_DEVICE_GET_IRQ_INFO, () => vfio_irq_info.encode({ index: 2 })],
      ['SET_IRQS', VFIO_DEVICE_SET_IRQS, () => irqSet(VFIO_PCI_MSIX_IRQ_INDEX, [efd])],
      ['RESET', VFIO_DEVICE_RESET, () => 0],
      ['GET_PCI_HOT_RESET_INFO', VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, () => {
        const b = new Uint8Array(12 + 8 * 4);
        b.set(vfio_pci_hot_reset_info.encode({ argsz: b.byteLength }));
        return b;
      }],
      ['PCI_HOT_RESET', VFIO_DEVICE_PCI_HOT_RESET, () => vfio_pci_hot_reset.encode({ count: 2, group_fds: groups })],
      ['FEATURE(MIG_DEVICE_STATE)', VFIO_DEVICE_FEATURE, () => vfio_device_feature.encode({
        flags: VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
        data: vfio_device_feature_mig_state.encode({ device_state: VFIO_DEVICE_STATE_PRE_COPY, data_fd: -1 }),
      })],
      ['FEATURE(DMA_LOGGING_START)', VFIO_DEVICE_FEATURE, () => vfio_device_feature.encode({
        flags: VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
        data: vfio_device_feature_dma_logging_control.encode({ page_size: 4096n, num_ranges: 1, ranges: ranges.addr }),
      })],
    ];
    let data = -1;
    for (const [name, request, arg] of calls) {
      const before = host.census();
      const migBefore = getMigState(host, fd);
      host.injectFault({ ioctl: request, errno: 'EIO', on: 'vfio-device' });
      const error = expectErrno(() => host.ioctl(fd, request, arg()), 'EIO');
      expect(error.ioctl, name).toBe(request === VFIO_DEVICE_FEATURE ? 'VFIO_DEVICE_FEATURE' : `VFIO_DEVICE_${name}`);
      expect(host.census(), name).toEqual(before);
      expect(getMigState(host, fd), name).toBe(migBefore);
      const retry = arg();
      host.ioctl(fd, request, retry);
      if (name === 'FEATURE(MIG_DEVICE_STATE)') data = vfio_device_feature_mig_state.decode(retry as Uint8Array, 8).data_fd;
    }
    expect(data).toBeGreaterThan(0);
    host.injectFault({ ioctl: VFIO_MIG_GET_PRECOPY_INFO, errno: 'EINTR', nth: 2 });
    host.ioctl(data, VFIO_MIG_GET_PRECOPY_INFO, vfio_precopy_info.encode({}));
    expectErrno(() => host.ioctl(data, VFIO_MIG_GET_PRECOPY_INFO, vfio_precopy_info.encode({})), 'EINTR');
    for (const f of [data, fd, efd, ...groups]) host.close(f);
    ranges.unmap();
    expect(host.census()).toEqual(start);
  });

  it('fires on the nth call only', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    host.injectFault({ ioctl: VFIO_DEVICE_GET_INFO, errno: 'ENOMEM', nth: 3 });
    host.ioctl(fd, VFIO_DEVICE_GET_INFO, vfio_device_info.encode({}));
    host.ioctl(fd, VFIO_DEVICE_GET_INFO, vfio_device_info.encode({}));
    expectErrno(() => host.ioctl(fd, VFIO_DEVICE_GET_INFO, vfio_device_info.encode({})), 'ENOMEM');
    host.ioctl(fd, VFIO_DEVICE_GET_INFO, vfio_device_info.encode({}));
  });
});

describe('closing a device', () => {
  it('drops every eventfd, data fd session, DMA log and open count it held', () => {
    const host = machine();
    const start = host.census();
    const fd = openDevice(host, NIC);
    const efds = Array.from({ length: 4 }, () => host.eventfd(0, EFD_NONBLOCK));
    setIrqEventfds(host, fd, VFIO_PCI_MSIX_IRQ_INDEX, 0, [efds[0]!, efds[1]!]);
    setIrqEventfds(host, fd, VFIO_PCI_ERR_IRQ_INDEX, 0, [efds[2]!]);
    setIrqEventfds(host, fd, VFIO_PCI_REQ_IRQ_INDEX, 0, [efds[3]!]);
    const ranges = anon(host, 16);
    ranges.bytes.set(vfio_device_feature_dma_logging_range.encode({ iova: 0n, length: 0x10_0000n }));
    host.ioctl(fd, VFIO_DEVICE_FEATURE, vfio_device_feature.encode({
      flags: VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
      data: vfio_device_feature_dma_logging_control.encode({ page_size: 4096n, num_ranges: 1, ranges: ranges.addr }),
    }));
    const data = setMigState(host, fd, VFIO_DEVICE_STATE_PRE_COPY);
    expect(host.census().objects).toMatchObject({ device_open: 1, irq_eventfd: 4, dma_logging: 1, data_fd: 1, eventfd: 4 });
    host.close(fd);
    expect(host.census().objects).toEqual({ eventfd: 4, data_fd: 1, mapping: 1 });
    expectErrno(() => host.read(data, new Uint8Array(8)), 'ENODEV');
    for (const f of [data, ...efds]) host.close(f);
    ranges.unmap();
    expect(host.census()).toEqual(start);
    const again = openDevice(host, NIC);
    expect(getMigState(host, again)).toBe(VFIO_DEVICE_STATE_RUNNING);
  });

  it('keeps INTx and its unmask eventfd until the last fd of the device closes', () => {
    const host = machine();
    const one = openDevice(host, NIC);
    const two = openDevice(host, NIC);
    const [trigger, unmask] = [host.eventfd(0, EFD_NONBLOCK), host.eventfd(0, EFD_NONBLOCK)];
    host.ioctl(one, VFIO_DEVICE_SET_IRQS, irqSet(VFIO_PCI_INTX_IRQ_INDEX, [trigger]));
    host.ioctl(one, VFIO_DEVICE_SET_IRQS, irqSet(VFIO_PCI_INTX_IRQ_INDEX, [unmask], VFIO_IRQ_SET_ACTION_UNMASK));
    const map = host.mmap(4096, PROT_READ, MAP_SHARED, two, bar(2));
    host.close(one);
    expect(host.census().objects).toMatchObject({ device_open: 1, irq_eventfd: 2 });
    host.close(two);
    expect(host.census().objects).toMatchObject({ device_open: 1, irq_eventfd: 2 }); // the mapping holds the file
    map.unmap();
    expect(host.census().objects).toEqual({ eventfd: 2 });
  });
});
