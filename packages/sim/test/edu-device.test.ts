// QEMU's edu device on the simulated host, driven only through the VFIO device fd: its register
// map, the factorial and interrupt registers, and the DMA engine through an IO page table.

import { describe, expect, it } from 'vitest';
import { EFD_NONBLOCK, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX } from '@vmmkit/core/uapi';
import { SimDmaFault, SimHost } from '../src/index.js';
import {
  type EduModel,
  EDU_DMA_CMD, EDU_DMA_COUNT, EDU_DMA_DST, EDU_DMA_IRQ, EDU_DMA_RUN, EDU_DMA_SRC, EDU_DMA_START, EDU_DMA_TO_PCI,
  EDU_FACTORIAL, EDU_ID, EDU_IRQ_ACK, EDU_IRQ_RAISE, EDU_IRQ_STATUS, EDU_LIVENESS, EDU_STATUS, EDU_STATUS_IRQFACT,
} from '../src/devices/edu.js';
import {
  bar, enableBusMaster, eventCount, identityDma, openDevice, read32, read64, setIrqEventfds, write32, write64,
} from './device-harness.js';

const EDU = '0000:00:03.0';
const IOVA = 0x100000n;

function dma(host: SimHost, fd: number, src: bigint, dst: bigint, count: number, cmd: number): void {
  write64(host, fd, bar(0, EDU_DMA_SRC), src);
  write64(host, fd, bar(0, EDU_DMA_DST), dst);
  write64(host, fd, bar(0, EDU_DMA_COUNT), BigInt(count));
  write32(host, fd, bar(0, EDU_DMA_CMD), cmd | EDU_DMA_RUN);
}

/** The poll loop a driver for a real edu runs: wait for the RUN bit to clear. */
function pollDone(host: SimHost, fd: number): number {
  let polls = 0;
  while (read32(host, fd, bar(0, EDU_DMA_CMD)) & EDU_DMA_RUN) {
    if (++polls > 1000) throw new Error('edu DMA never completed');
  }
  return polls;
}

/** edu's internal DMA buffer, inspected from outside (software reaches it only by DMA). */
const eduBuffer = (host: SimHost, bdf: string): DataView => {
  const b = (host.kernel.device(bdf).model as EduModel).buffer;
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
};
const buf32 = (host: SimHost, bdf: string, at: number): number => eduBuffer(host, bdf).getUint32(at, true);
const setBuf32 = (host: SimHost, bdf: string, at: number, v: number): void => eduBuffer(host, bdf).setUint32(at, v, true);

describe('edu registers', () => {
  it('identifies itself, inverts the liveness value, and computes factorials', () => {
    const host = new SimHost({ devices: [{ bdf: EDU, model: 'edu' }] });
    const fd = openDevice(host, EDU);
    expect(read32(host, fd, bar(0, EDU_ID))).toBe(0x010000ed);
    write32(host, fd, bar(0, EDU_LIVENESS), 0x12345678);
    expect(read32(host, fd, bar(0, EDU_LIVENESS))).toBe(0xedcba987); // as realhost read it
    write32(host, fd, bar(0, EDU_FACTORIAL), 10);
    expect(read32(host, fd, bar(0, EDU_STATUS)) & 1).toBe(0);
    expect(read32(host, fd, bar(0, EDU_FACTORIAL))).toBe(3628800);
    write32(host, fd, bar(0, EDU_FACTORIAL), 13);
    expect(read32(host, fd, bar(0, EDU_FACTORIAL))).toBe(Number((6227020800n) & 0xffff_ffffn));
  });

  it('reads all ones at undecoded offsets and for accesses of the wrong size, and ignores such writes', () => {
    const host = new SimHost({ devices: [{ bdf: EDU, model: 'edu' }] });
    const fd = openDevice(host, EDU);
    expect(read32(host, fd, bar(0, 0x0c))).toBe(0xffff_ffff);
    const two = new Uint8Array(2);
    host.pread(fd, two, bar(0, EDU_ID));
    expect([...two]).toEqual([0xff, 0xff]);
    host.pwrite(fd, new Uint8Array([1, 2]), bar(0, EDU_LIVENESS));
    expect(read32(host, fd, bar(0, EDU_LIVENESS))).toBe(0);
  });

  it('raises the factorial interrupt when asked to, and acks it through 0x64', () => {
    const host = new SimHost({ devices: [{ bdf: EDU, model: 'edu' }] });
    const fd = openDevice(host, EDU);
    const vector = host.eventfd(0, EFD_NONBLOCK);
    setIrqEventfds(host, fd, VFIO_PCI_MSI_IRQ_INDEX, 0, [vector]);
    write32(host, fd, bar(0, EDU_STATUS), EDU_STATUS_IRQFACT);
    write32(host, fd, bar(0, EDU_FACTORIAL), 5);
    expect(eventCount(host, vector)).toBe(1n);
    expect(read32(host, fd, bar(0, EDU_IRQ_STATUS))).toBe(0x1);
    write32(host, fd, bar(0, EDU_IRQ_ACK), 0x1);
    expect(read32(host, fd, bar(0, EDU_IRQ_STATUS))).toBe(0);
    write32(host, fd, bar(0, EDU_IRQ_RAISE), 0x80);
    expect(read32(host, fd, bar(0, EDU_IRQ_STATUS))).toBe(0x80);
    expect(eventCount(host, vector)).toBe(1n);
  });
});

describe('edu DMA', () => {
  it('copies 2048 bytes RAM -> edu -> RAM through its IO page table, as the realhost probe does', () => {
    const host = new SimHost({ devices: [{ bdf: EDU, model: 'edu' }] });
    const fd = openDevice(host, EDU);
    enableBusMaster(host, fd);
    const ram = identityDma(host, EDU, IOVA, 16 * 4096);
    const pattern = Uint8Array.from({ length: 2048 }, (_, i) => (i * 7 + 3) & 0xff);
    ram.bytes.set(pattern, 0);
    dma(host, fd, IOVA, BigInt(EDU_DMA_START), 2048, 0);
    expect(pollDone(host, fd)).toBe(0); // the first poll let the 100 ms pass
    dma(host, fd, BigInt(EDU_DMA_START), IOVA + 0x5000n, 2048, EDU_DMA_TO_PCI);
    pollDone(host, fd);
    expect(ram.bytes.subarray(0x5000, 0x5000 + 2048)).toEqual(pattern);
    expect(host.kernel.device(EDU).faults).toEqual([]);
  });

  it('completes on its 100 ms virtual-time timer and interrupts when asked to', () => {
    const host = new SimHost({ devices: [{ bdf: EDU, model: 'edu' }] });
    const fd = openDevice(host, EDU);
    enableBusMaster(host, fd);
    const ram = identityDma(host, EDU, IOVA, 4096);
    const intx = host.eventfd(0, EFD_NONBLOCK);
    setIrqEventfds(host, fd, VFIO_PCI_INTX_IRQ_INDEX, 0, [intx]);
    ram.bytes.fill(0xab, 0, 64);
    dma(host, fd, IOVA, BigInt(EDU_DMA_START), 64, EDU_DMA_IRQ);
    host.advance(99);
    expect(eventCount(host, intx)).toBe(0n);
    write64(host, fd, bar(0, EDU_DMA_COUNT), 1n); // ignored while the transfer runs
    host.advance(1);
    expect(eventCount(host, intx)).toBe(1n);
    expect(read32(host, fd, bar(0, EDU_IRQ_STATUS))).toBe(0x100);
    expect(read64(host, fd, bar(0, EDU_DMA_COUNT))).toBe(64n);
    expect(buf32(host, EDU, 60)).toBe(0xabababab);
  });

  it('records a DMA the IOMMU refuses and moves no data', () => {
    const host = new SimHost({ devices: [{ bdf: EDU, model: 'edu' }] });
    const fd = openDevice(host, EDU);
    enableBusMaster(host, fd);
    const ram = identityDma(host, EDU, IOVA, 4096);
    setBuf32(host, EDU, 0, 0x11223344);
    dma(host, fd, BigInt(EDU_DMA_START), IOVA + 0x2000n, 16, EDU_DMA_TO_PCI); // past the mapping
    pollDone(host, fd);
    const [fault] = host.kernel.device(EDU).faults;
    expect(fault).toBeInstanceOf(SimDmaFault);
    expect(fault).toMatchObject({ iova: IOVA + 0x2000n, write: true, length: 16 });
    dma(host, fd, IOVA + 0x1000n, BigInt(EDU_DMA_START), 16, 0);
    pollDone(host, fd);
    expect(buf32(host, EDU, 0)).toBe(0x11223344); // the faulting read set nothing
    expect(ram.bytes.every((b) => b === 0)).toBe(true);
  });

  it('faults every DMA while Bus Master Enable is clear', () => {
    const host = new SimHost({ devices: [{ bdf: EDU, model: 'edu' }] });
    const fd = openDevice(host, EDU);
    identityDma(host, EDU, IOVA, 4096);
    dma(host, fd, IOVA, BigInt(EDU_DMA_START), 16, 0);
    pollDone(host, fd);
    expect(host.kernel.device(EDU).faults[0]?.reason).toMatch(/Bus Master/);
  });

  it('clamps addresses to its 28-bit DMA mask unless configured otherwise', () => {
    const host = new SimHost({
      devices: [{ bdf: EDU, model: 'edu' }, { bdf: '0000:00:05.0', model: 'edu', options: { dma_mask: 0xffff_ffff_ffff_ffffn } }],
    });
    for (const [bdf, seen] of [[EDU, IOVA], ['0000:00:05.0', IOVA + 0x1000_0000n]] as const) {
      const fd = openDevice(host, bdf);
      enableBusMaster(host, fd);
      const ram = identityDma(host, bdf, seen, 4096);
      setBuf32(host, bdf, 0, 0x5a5a5a5a);
      dma(host, fd, BigInt(EDU_DMA_START), IOVA + 0x1000_0000n, 4, EDU_DMA_TO_PCI);
      pollDone(host, fd);
      expect(host.kernel.device(bdf).faults).toEqual([]);
      expect([...ram.bytes.subarray(0, 4)]).toEqual([0x5a, 0x5a, 0x5a, 0x5a]);
    }
  });

  it('moves nothing for a transfer outside its 4 KiB buffer, but still completes it', () => {
    const host = new SimHost({ devices: [{ bdf: EDU, model: 'edu' }] });
    const fd = openDevice(host, EDU);
    enableBusMaster(host, fd);
    const ram = identityDma(host, EDU, IOVA, 8192);
    ram.bytes.fill(1);
    dma(host, fd, IOVA, BigInt(EDU_DMA_START + 4000), 200, 0);
    pollDone(host, fd);
    expect(buf32(host, EDU, 4000)).toBe(0);
    dma(host, fd, IOVA, BigInt(EDU_DMA_START), 4096, 0); // the whole buffer is fine
    pollDone(host, fd);
    expect(buf32(host, EDU, 4092)).toBe(0x01010101);
  });
});
