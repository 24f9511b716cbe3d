// The simulated NIC on the simulated host: registers, receive traffic landing in guest memory
// as virtual time passes, interrupts per batch, ring-full drops, DMA errors, and its state.

import { describe, expect, it } from 'vitest';
import { EFD_NONBLOCK, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX } from '@vmmkit/core/uapi';
import { SimHost } from '../src/index.js';
import { SimErrno } from '../src/kernel/sim-errno.js';
import { NicModel } from '../src/devices/nic.js';
import { makePacket } from '../src/devices/nic-traffic.js';
import * as R from '../src/devices/nic-regs.js';
import {
  bar, enableBusMaster, eventCount, expectSameBytes, identityDma, openDevice, read32, read64, setIrqEventfds, write32, write64,
} from './device-harness.js';

const NIC = '0000:00:04.0';
const RING = 0x20_0000n;

function startNic(host: SimHost, opts: { slots?: number; pkt?: number; rate?: number; batch?: number; seed?: number } = {}) {
  const fd = openDevice(host, NIC);
  enableBusMaster(host, fd);
  const slots = opts.slots ?? 64;
  const pkt = opts.pkt ?? 256;
  const ram = identityDma(host, NIC, RING, slots * pkt);
  write64(host, fd, bar(0, R.NIC_RX_RING_BASE), RING);
  write32(host, fd, bar(0, R.NIC_RX_RING_SIZE), slots);
  write32(host, fd, bar(0, R.NIC_RX_PKT_SIZE), pkt);
  write32(host, fd, bar(0, R.NIC_RATE_PPS), opts.rate ?? 1000);
  write32(host, fd, bar(0, R.NIC_IRQ_BATCH), opts.batch ?? 8);
  write32(host, fd, bar(0, R.NIC_SEED), opts.seed ?? 0x5eed);
  return { fd, ram };
}

describe('NIC receive traffic', () => {
  it('DMA-writes packets into the ring as time passes and interrupts once per batch over MSI-X', () => {
    const host = new SimHost({ devices: [{ bdf: NIC, model: 'nic' }] });
    const { fd, ram } = startNic(host);
    const vector = host.eventfd(0, EFD_NONBLOCK);
    setIrqEventfds(host, fd, VFIO_PCI_MSIX_IRQ_INDEX, 0, [vector]);
    host.advance(50);
    expect(read64(host, fd, bar(0, R.NIC_RX_PACKETS))).toBe(0n); // not enabled yet
    write32(host, fd, bar(0, R.NIC_CTRL), R.NIC_CTRL_RX_EN | R.NIC_CTRL_IRQ_EN);
    expect(read32(host, fd, bar(0, R.NIC_STATUS))).toBe(R.NIC_STATUS_LINK_UP | R.NIC_STATUS_RX_ACTIVE);
    host.advance(40);
    expect(read64(host, fd, bar(0, R.NIC_RX_PACKETS))).toBe(40n);
    expect(read64(host, fd, bar(0, R.NIC_RX_BYTES))).toBe(40n * 256n);
    expect(read32(host, fd, bar(0, R.NIC_RX_HEAD))).toBe(40);
    expect(eventCount(host, vector)).toBe(5n);
    for (const seq of [0, 17, 39]) {
      expect(ram.bytes.subarray(seq * 256, (seq + 1) * 256)).toEqual(makePacket(BigInt(seq), 256, 0x5eed));
    }
    expect(ram.bytes.subarray(40 * 256).every((b) => b === 0)).toBe(true);
  });

  it('drops what finds the ring full, until software consumes slots by moving the tail', () => {
    const host = new SimHost({ devices: [{ bdf: NIC, model: 'nic' }] });
    const { fd } = startNic(host, { slots: 16 });
    write32(host, fd, bar(0, R.NIC_CTRL), R.NIC_CTRL_RX_EN);
    host.advance(100);
    expect(read64(host, fd, bar(0, R.NIC_RX_PACKETS))).toBe(15n);
    expect(read64(host, fd, bar(0, R.NIC_RX_DROPS))).toBe(85n);
    write32(host, fd, bar(0, R.NIC_RX_TAIL), 10);
    host.advance(20);
    expect(read64(host, fd, bar(0, R.NIC_RX_PACKETS))).toBe(25n);
    expect(read32(host, fd, bar(0, R.NIC_RX_HEAD))).toBe(9);
  });

  it('accumulates fractional packets across small steps of time', () => {
    const host = new SimHost({ devices: [{ bdf: NIC, model: 'nic' }] });
    const { fd } = startNic(host, { rate: 300 });
    write32(host, fd, bar(0, R.NIC_CTRL), R.NIC_CTRL_RX_EN);
    for (let i = 0; i < 10; i++) host.advance(1);
    expect(read64(host, fd, bar(0, R.NIC_RX_PACKETS))).toBe(3n);
  });

  it('halts receiving on a DMA the IOMMU refuses, reporting it in the registers and as an interrupt', () => {
    const host = new SimHost({ devices: [{ bdf: NIC, model: 'nic' }] });
    const { fd } = startNic(host);
    const intx = host.eventfd(0, EFD_NONBLOCK);
    setIrqEventfds(host, fd, VFIO_PCI_INTX_IRQ_INDEX, 0, [intx]);
    write64(host, fd, bar(0, R.NIC_RX_RING_BASE), 0x4000_0000n); // nothing mapped there
    write32(host, fd, bar(0, R.NIC_CTRL), R.NIC_CTRL_RX_EN | R.NIC_CTRL_IRQ_EN);
    host.advance(100);
    expect(read32(host, fd, bar(0, R.NIC_DMA_ERRORS))).toBe(1);
    expect(read32(host, fd, bar(0, R.NIC_CTRL)) & R.NIC_CTRL_RX_EN).toBe(0);
    expect(read32(host, fd, bar(0, R.NIC_IRQ_STATUS))).toBe(R.NIC_IRQ_DMA_ERROR);
    expect(eventCount(host, intx)).toBe(1n);
    expect(host.kernel.device(NIC).faults).toHaveLength(1);
    write32(host, fd, bar(0, R.NIC_IRQ_STATUS), R.NIC_IRQ_DMA_ERROR);
    expect(read32(host, fd, bar(0, R.NIC_IRQ_STATUS))).toBe(0);
  });

  it('resets its registers through NIC_CTRL_RESET', () => {
    const host = new SimHost({ devices: [{ bdf: NIC, model: 'nic' }] });
    const { fd } = startNic(host);
    write32(host, fd, bar(0, R.NIC_CTRL), R.NIC_CTRL_RX_EN);
    host.advance(10);
    write32(host, fd, bar(0, R.NIC_CTRL), R.NIC_CTRL_RESET);
    expect(read64(host, fd, bar(0, R.NIC_RX_PACKETS))).toBe(0n);
    expect(read32(host, fd, bar(0, R.NIC_RX_RING_SIZE))).toBe(0);
    expect(read32(host, fd, bar(0, R.NIC_RX_PKT_SIZE))).toBe(R.NIC_DEFAULT_PKT_SIZE);
  });
});

describe('NIC device state', () => {
  it('round-trips registers, counters and its flow table through save and load exactly', () => {
    const host = new SimHost({ devices: [{ bdf: NIC, model: 'nic' }] });
    const { fd } = startNic(host, { rate: 777 });
    write32(host, fd, bar(0, R.NIC_CTRL), R.NIC_CTRL_RX_EN);
    host.advance(33.3);
    const nic = host.kernel.device(NIC).model as NicModel;
    const saved = nic.save();
    const copy = new NicModel({ bdf: NIC, model: 'nic' });
    copy.load(saved);
    expectSameBytes(copy.save(), saved);
    const before = copy.version;
    copy.load(saved);
    expect(copy.version).toBeGreaterThan(before);
  });

  it('refuses a state that is not its own with EINVAL, changing nothing', () => {
    const nic = new NicModel({ bdf: NIC, model: 'nic' });
    const good = nic.save();
    expect(() => nic.load(good.subarray(1))).toThrow(SimErrno);
    const bad = good.slice();
    bad[0] ^= 1;
    expect(() => nic.load(bad)).toThrow(/not a NIC state of format 2/);
    const wrongHead = good.slice();
    new DataView(wrongHead.buffer).setUint32(24, 5, true); // head with no ring
    expect(() => nic.load(wrongHead)).toThrow(/out-of-range/);
    expectSameBytes(nic.save(), good);
  });
});
