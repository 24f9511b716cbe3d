// A PCI function for the BAR mapping tests: one 64-bit memory BAR0 of 64 KiB whose pages
// 0x0000-0x3fff and 0x8000-0xffff are memory of a memfd (barMemory: two mappings of it), and
// whose page 0x4000 is trapped registers, with a doorbell at 0x4000 the function wants signalled
// through an eventfd (barEventfds). Optionally also an I/O BAR2 of 32 ports whose port 4 signals
// the same eventfd. It counts the BAR accesses that reach it. Also: config cycles through a VM's
// host bridge as a vCPU's port I/O would make them.

import { type HostKernel, type HostMapping, type PciBarEventfd, type PciBarMemory, type PciFunction } from '@vmmkit/core';
import { EFD_CLOEXEC, EFD_NONBLOCK, MAP_SHARED, MFD_CLOEXEC, PROT_READ, PROT_WRITE } from '@vmmkit/core/uapi';
import type { IoBus } from '../src/index.js';

export const FAKE_BAR_SIZE = 0x1_0000;
export const FAKE_LOW_PART = { offset: 0x0, size: 0x4000 };
export const FAKE_HIGH_PART = { offset: 0x8000, size: 0x8000 };
export const FAKE_DOORBELL = 0x4000;
export const FAKE_IO_BAR_SIZE = 32;
export const FAKE_IO_DOORBELL = 4;

export class FakeBarFunction implements PciFunction {
  readonly driver = 'fake-bar';
  readonly name = 'fake-bar';
  readonly config = new DataView(new ArrayBuffer(256));
  /** BAR accesses that reached the function, as `r|w offset`. */
  readonly accesses: string[] = [];
  readonly registers = new Map<number, bigint>();
  readonly low: HostMapping;
  readonly high: HostMapping;
  readonly eventfd: number;
  readonly #memfd: number;

  /** @throws what the host's memfd, mmap or eventfd threw, after closing what it made. */
  constructor(private readonly host: HostKernel, readonly id = 'fake0', readonly ioBar = false) {
    this.config.setUint32(0, 0xfa4e_1af4, true);
    this.config.setUint32(0x10, 0x4, true); // BAR0: 64-bit memory
    if (ioBar) this.config.setUint32(0x18, 0x1, true); // BAR2: I/O
    const made: (() => void)[] = [];
    try {
      this.#memfd = host.memfdCreate('fake-bar', MFD_CLOEXEC);
      const memfd = this.#memfd;
      made.push(() => host.close(memfd));
      host.ftruncate(memfd, BigInt(FAKE_BAR_SIZE));
      this.low = host.mmap(FAKE_LOW_PART.size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, BigInt(FAKE_LOW_PART.offset));
      const low = this.low;
      made.push(() => low.unmap());
      this.high = host.mmap(FAKE_HIGH_PART.size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, BigInt(FAKE_HIGH_PART.offset));
      const high = this.high;
      made.push(() => high.unmap());
      this.eventfd = host.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    } catch (e) {
      for (const undo of made.reverse()) undo();
      throw e;
    }
  }

  configRead(offset: number, size: 1 | 2 | 4): number {
    return size === 4 ? this.config.getUint32(offset, true) : size === 2 ? this.config.getUint16(offset, true) : this.config.getUint8(offset);
  }

  configWrite(offset: number, size: 1 | 2 | 4, value: number): void {
    if (offset === 0x10 && size === 4) value = (value & ~(FAKE_BAR_SIZE - 1)) | 0x4; // size and type bits
    if (offset === 0x18 && size === 4) value = this.ioBar ? (value & ~(FAKE_IO_BAR_SIZE - 1)) | 0x1 : 0;
    if (size === 4) this.config.setUint32(offset, value, true);
    else if (size === 2) this.config.setUint16(offset, value, true);
    else this.config.setUint8(offset, value);
  }

  barRead(bar: number, offset: number): bigint {
    this.accesses.push(`r ${offset.toString(16)}`);
    return this.registers.get(offset) ?? 0n;
  }

  barWrite(bar: number, offset: number, size: number, value: bigint): void {
    this.accesses.push(`w ${offset.toString(16)}`);
    this.registers.set(offset, value);
  }

  barSize(bar: number): bigint {
    return bar === 0 ? BigInt(FAKE_BAR_SIZE) : bar === 2 && this.ioBar ? BigInt(FAKE_IO_BAR_SIZE) : 0n;
  }

  barMemory(bar: number): readonly PciBarMemory[] {
    if (bar !== 0) return [];
    return [
      { offset: BigInt(FAKE_LOW_PART.offset), size: BigInt(FAKE_LOW_PART.size), mapping: this.low },
      { offset: BigInt(FAKE_HIGH_PART.offset), size: BigInt(FAKE_HIGH_PART.size), mapping: this.high },
    ];
  }

  barEventfds(bar: number): readonly PciBarEventfd[] {
    if (bar === 2 && this.ioBar) return [{ offset: BigInt(FAKE_IO_DOORBELL), size: 4, fd: this.eventfd }];
    return bar === 0 ? [{ offset: BigInt(FAKE_DOORBELL), size: 4, fd: this.eventfd }] : [];
  }

  /** The eventfd's count, reset (0 when it was not signalled). */
  doorbells(): bigint {
    const buf = new Uint8Array(8);
    try {
      this.host.read(this.eventfd, buf);
    } catch {
      return 0n; // EAGAIN
    }
    return new DataView(buf.buffer).getBigUint64(0, true);
  }

  async unrealize(): Promise<void> {
    this.low.unmap();
    this.high.unmap();
    this.host.close(this.eventfd);
    this.host.close(this.#memfd);
  }
}

/** CONFIG_ADDRESS for register `reg` of function 0 in `slot` of bus 0. */
export const configAddress = (slot: number, reg: number): number => (0x8000_0000 | (slot << 11) | (reg & 0xfc)) >>> 0;

/** A config write through the host bridge on `io`, as a vCPU's port I/O makes it. */
export async function configWrite(io: IoBus, slot: number, reg: number, size: 1 | 2 | 4, value: number): Promise<void> {
  await io.pio(portAccess(0xcf8, 4, configAddress(slot, reg)));
  await io.pio(portAccess(0xcfc + (reg & 3), size, value));
}

/** A config read through the host bridge on `io`. */
export async function configRead(io: IoBus, slot: number, reg: number, size: 1 | 2 | 4): Promise<number> {
  await io.pio(portAccess(0xcf8, 4, configAddress(slot, reg)));
  const a = { ...portAccess(0xcfc + (reg & 3), size, 0), write: false };
  await io.pio(a);
  return a.data.reduceRight((v, b) => v * 256 + b, 0);
}

function portAccess(port: number, size: number, value: number) {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (value / 2 ** (8 * i)) & 0xff;
  return { vcpu: 0, addr: BigInt(port), size, count: 1, write: true, data };
}
