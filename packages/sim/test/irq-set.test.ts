// VFIO_DEVICE_SET_IRQS on the simulated host: INTx with automask, unmask and unmask eventfds,
// MSI and MSI-X vectors fed by the device, error/request eventfds, and the errno of each rule.

import { describe, expect, it } from 'vitest';
import {
  EFD_NONBLOCK, VFIO_DEVICE_SET_IRQS, VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
  VFIO_PCI_REQ_IRQ_INDEX, vfio_irq_set,
} from '@vmmkit/core/uapi';
import { SimHost, type SimDeviceConfig, type SimPciModel } from '../src/index.js';
import { EDU_IRQ_ACK, EDU_IRQ_RAISE, EduModel } from '../src/devices/edu.js';
import { CONFIG, bar, eventCount, expectErrno, openDevice, read16, setIrqEventfds, write16, write32 } from './device-harness.js';

const EDU = '0000:00:03.0';
const NIC = '0000:00:04.0';
const machine = () => new SimHost({ devices: [{ bdf: EDU, model: 'edu' }, { bdf: NIC, model: 'nic' }] });
const efd = (host: SimHost) => host.eventfd(0, EFD_NONBLOCK);

function setIrqs(host: SimHost, fd: number, flags: number, index: number, start: number, count: number, data = new Uint8Array(0)) {
  return host.ioctl(fd, VFIO_DEVICE_SET_IRQS, vfio_irq_set.encode({ flags, index, start, count, data }));
}
const s32s = (...v: number[]) => new Uint8Array(new Int32Array(v).buffer);
const NONE_TRIGGER = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;

describe('INTx', () => {
  it('signals the trigger eventfd once and stays masked until UNMASK, then refires while the line is asserted', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    const trigger = efd(host);
    setIrqEventfds(host, fd, VFIO_PCI_INTX_IRQ_INDEX, 0, [trigger]);
    write32(host, fd, bar(0, EDU_IRQ_RAISE), 0x1);
    write32(host, fd, bar(0, EDU_IRQ_RAISE), 0x2);
    expect(eventCount(host, trigger)).toBe(1n); // automasked after the first
    setIrqs(host, fd, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1);
    expect(eventCount(host, trigger)).toBe(1n); // still asserted: sent again, masked again
    write32(host, fd, bar(0, EDU_IRQ_ACK), 0x3);
    setIrqs(host, fd, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1);
    expect(eventCount(host, trigger)).toBe(0n);
    write32(host, fd, bar(0, EDU_IRQ_RAISE), 0x1);
    expect(eventCount(host, trigger)).toBe(1n);
    host.close(fd);
    expect(host.census().objects).toEqual({ eventfd: 1 });
  });

  it('masks on request, honours DATA_BOOL, and unmasks through an unmask eventfd the user signals', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    const trigger = efd(host);
    const unmask = efd(host);
    setIrqEventfds(host, fd, VFIO_PCI_INTX_IRQ_INDEX, 0, [trigger]);
    setIrqs(host, fd, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_MASK, 0, 0, 1, new Uint8Array([1]));
    write32(host, fd, bar(0, EDU_IRQ_RAISE), 0x1);
    expect(eventCount(host, trigger)).toBe(0n);
    setIrqs(host, fd, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1, s32s(unmask));
    host.write(unmask, new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]));
    expect(eventCount(host, unmask)).toBe(0n); // consumed by the kernel
    expect(eventCount(host, trigger)).toBe(1n); // the pending interrupt arrived
    expect(host.census().objects.irq_eventfd).toBe(2);
    setIrqs(host, fd, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1, s32s(-1));
    expect(host.census().objects.irq_eventfd).toBe(1);
    expectErrno(() => setIrqs(host, fd, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_MASK, 0, 0, 1, s32s(unmask)), 'ENOTTY');
  });

  it('loops back DATA_NONE and DATA_BOOL triggers, and disables with count 0', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    const trigger = efd(host);
    setIrqEventfds(host, fd, VFIO_PCI_INTX_IRQ_INDEX, 0, [trigger]);
    setIrqs(host, fd, NONE_TRIGGER, 0, 0, 1);
    setIrqs(host, fd, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, 1, new Uint8Array([0]));
    setIrqs(host, fd, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, 1, new Uint8Array([1]));
    expect(eventCount(host, trigger)).toBe(2n);
    setIrqs(host, fd, NONE_TRIGGER, 0, 0, 0);
    expect(host.census().objects.irq_eventfd).toBeUndefined();
    expectErrno(() => setIrqs(host, fd, NONE_TRIGGER, 0, 0, 1), 'EINVAL'); // not enabled
    expectErrno(() => setIrqs(host, fd, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, 0, 0, 1), 'EINVAL');
  });

  it('follows the user INTx disable bit in the command register', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    const trigger = efd(host);
    setIrqEventfds(host, fd, VFIO_PCI_INTX_IRQ_INDEX, 0, [trigger]);
    write16(host, fd, CONFIG + 4n, read16(host, fd, CONFIG + 4n) | 0x400);
    write32(host, fd, bar(0, EDU_IRQ_RAISE), 0x1);
    expect(eventCount(host, trigger)).toBe(0n);
    write16(host, fd, CONFIG + 4n, read16(host, fd, CONFIG + 4n) & ~0x400);
    expect(eventCount(host, trigger)).toBe(1n);
  });
});

describe('MSI and MSI-X', () => {
  it('enables edu MSI: the device sees MSI enabled and its interrupts land on the vector eventfd', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    const vector = efd(host);
    setIrqEventfds(host, fd, VFIO_PCI_MSI_IRQ_INDEX, 0, [vector]);
    expect(host.kernel.device(EDU).model.config[0x42]! & 1).toBe(1);
    write32(host, fd, bar(0, EDU_IRQ_RAISE), 0x1);
    write32(host, fd, bar(0, EDU_IRQ_RAISE), 0x1);
    expect(eventCount(host, vector)).toBe(2n); // edge-like: no masking for MSI
    expectErrno(() => setIrqEventfds(host, fd, VFIO_PCI_INTX_IRQ_INDEX, 0, [vector]), 'EINVAL'); // MSI is on
    expectErrno(() => setIrqs(host, fd, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, 1, 0, 1), 'ENOTTY');
    setIrqs(host, fd, NONE_TRIGGER, VFIO_PCI_MSI_IRQ_INDEX, 0, 0);
    expect(host.kernel.device(EDU).model.config[0x42]! & 1).toBe(0);
    expect(host.census().objects.irq_eventfd).toBeUndefined();
  });

  it('adds MSI-X vectors while enabled, loops back per vector, and clears one with fd -1', () => {
    const host = machine();
    const fd = openDevice(host, NIC);
    const [a, b] = [efd(host), efd(host)];
    setIrqEventfds(host, fd, VFIO_PCI_MSIX_IRQ_INDEX, 0, [a]);
    setIrqEventfds(host, fd, VFIO_PCI_MSIX_IRQ_INDEX, 3, [b]);
    setIrqs(host, fd, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 4, new Uint8Array([1, 1, 1, 1]));
    expect([eventCount(host, a), eventCount(host, b)]).toEqual([1n, 1n]);
    setIrqEventfds(host, fd, VFIO_PCI_MSIX_IRQ_INDEX, 0, [-1]);
    setIrqs(host, fd, NONE_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 4);
    expect([eventCount(host, a), eventCount(host, b)]).toEqual([0n, 1n]);
    expect(host.census().objects.irq_eventfd).toBe(1);
  });

  it('refuses an MSI vector that was not allocated when MSI was enabled', () => {
    const host = new SimHost({ devices: [{ bdf: EDU, model: multiMsiEdu }] });
    const fd = openDevice(host, EDU);
    setIrqEventfds(host, fd, VFIO_PCI_MSI_IRQ_INDEX, 0, [efd(host)]);
    expectErrno(() => setIrqEventfds(host, fd, VFIO_PCI_MSI_IRQ_INDEX, 1, [efd(host)]), 'EINVAL');
    expect(host.census().objects.irq_eventfd).toBe(1);
  });

  it('rolls a failing block back like the kernel: earlier vectors of the block end up cleared', () => {
    const host = machine();
    const fd = openDevice(host, NIC);
    const [a, b] = [efd(host), efd(host)];
    setIrqEventfds(host, fd, VFIO_PCI_MSIX_IRQ_INDEX, 0, [a, b]);
    const notEventfd = host.open('/dev/null', 2);
    expectErrno(() => setIrqEventfds(host, fd, VFIO_PCI_MSIX_IRQ_INDEX, 0, [a, notEventfd]), 'EINVAL');
    expectErrno(() => setIrqEventfds(host, fd, VFIO_PCI_MSIX_IRQ_INDEX, 0, [99]), 'EBADF');
    expect(host.census().objects.irq_eventfd).toBeUndefined();
    setIrqs(host, fd, NONE_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 0); // still enabled: disable works
  });

  it('disables MSI-X fully when the first block fails to enable', () => {
    const host = machine();
    const fd = openDevice(host, NIC);
    expectErrno(() => setIrqEventfds(host, fd, VFIO_PCI_MSIX_IRQ_INDEX, 0, [efd(host), 77]), 'EBADF');
    expectErrno(() => setIrqs(host, fd, NONE_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 0), 'EINVAL'); // nothing enabled
    setIrqEventfds(host, fd, VFIO_PCI_INTX_IRQ_INDEX, 0, [efd(host)]); // so INTx can be enabled
  });
});

describe('error and request interrupts', () => {
  it('sets, loops back and clears the request eventfd; the error IRQ exists only on PCIe', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    const req = efd(host);
    expectErrno(() => setIrqs(host, fd, NONE_TRIGGER, VFIO_PCI_REQ_IRQ_INDEX, 0, 1), 'EINVAL'); // nothing set
    setIrqEventfds(host, fd, VFIO_PCI_REQ_IRQ_INDEX, 0, [req]);
    setIrqs(host, fd, NONE_TRIGGER, VFIO_PCI_REQ_IRQ_INDEX, 0, 1);
    expect(eventCount(host, req)).toBe(1n);
    setIrqs(host, fd, NONE_TRIGGER, VFIO_PCI_REQ_IRQ_INDEX, 0, 0);
    expect(host.census().objects.irq_eventfd).toBeUndefined();
    expectErrno(() => setIrqEventfds(host, fd, VFIO_PCI_ERR_IRQ_INDEX, 0, [req]), 'EINVAL');
    const nic = openDevice(host, NIC);
    setIrqEventfds(host, nic, VFIO_PCI_ERR_IRQ_INDEX, 0, [req]);
    expectErrno(() => setIrqs(host, nic, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, VFIO_PCI_ERR_IRQ_INDEX, 0, 1), 'ENOTTY');
    host.close(nic);
    expect(host.census().objects.irq_eventfd).toBeUndefined(); // released with the device
  });
});

describe('SET_IRQS validation', () => {
  it('applies vfio_set_irqs_validate_and_prepare', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    const bad = (argsz: number | undefined, flags: number, index: number, start: number, count: number, data?: Uint8Array) =>
      expectErrno(() => host.ioctl(fd, VFIO_DEVICE_SET_IRQS, vfio_irq_set.encode({ argsz, flags, index, start, count, data })), 'EINVAL');
    bad(16, NONE_TRIGGER, 0, 0, 1); // argsz < minsz
    bad(undefined, NONE_TRIGGER, 5, 0, 1); // index
    bad(undefined, NONE_TRIGGER, 0, 1, 0xffff_fffe); // count overflows
    bad(undefined, NONE_TRIGGER | 0x100, 0, 0, 1); // unknown flag
    bad(undefined, NONE_TRIGGER, 0, 1, 0); // start beyond the one INTx
    bad(undefined, NONE_TRIGGER, VFIO_PCI_MSIX_IRQ_INDEX, 0, 0); // edu has no MSI-X
    bad(undefined, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, 1);
    bad(undefined, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, 1); // no room for the fd
    expectErrno(() => setIrqs(host, fd, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1), 'ENOTTY');
  });
});

/** edu advertising four MSI vectors, to exercise vector allocation. */
function multiMsiEdu(config: SimDeviceConfig): SimPciModel {
  const edu = new EduModel(config);
  edu.config[0x42] = (edu.config[0x42]! & ~0x0e) | (2 << 1);
  return new Proxy(edu, {
    get(target, key) {
      if (key === 'interrupts') return { intx: true, msi: 4, msix: 0 };
      const value: unknown = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
