// The PCI host bridge as vCPUs reach it, driven without KVM: config mechanism #1 onto the
// functions of the VM's bus 0 (the simulated nic through vfio-pci, and a function whose
// accessors answer asynchronously), and the BARs the guest placed decoded to BAR accesses.

import 'reflect-metadata';
import { describe, expect, it } from 'vitest';
import { AddressSpace, ConfigError, PciBus, Vmm, type PciFunction } from '@vmmkit/core';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { vfioPciPlugin, type VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { NIC_A, NIC_ID, NIC_ID_VALUE, NIC_RX_RING_SIZE, SimHost, simMachine } from '@vmmkit/sim';
import { IoBus, PciHostBridge, type GuestAccess } from '../src/index.js';

const enable = (slot: number, reg: number): number => (0x8000_0000 | (slot << 11) | reg) >>> 0;

/** Drives a bus as a vCPU's exits would. */
function cpu(io: IoBus) {
  const access = (addr: bigint, size: number, write: boolean): GuestAccess => ({ vcpu: 0, addr, size, count: 1, write, data: new Uint8Array(size) });
  const le = (d: Uint8Array): bigint => d.reduceRight((v, b) => (v << 8n) | BigInt(b), 0n);
  const withValue = (addr: bigint, size: number, value: bigint): GuestAccess => {
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i++) data[i] = Number((value >> BigInt(8 * i)) & 0xffn);
    return { vcpu: 0, addr, size, count: 1, write: true, data };
  };
  return {
    async out(port: number, size: number, value: number | bigint): Promise<boolean> { return io.pio(withValue(BigInt(port), size, BigInt(value))); },
    async in(port: number, size: number): Promise<bigint> { const a = access(BigInt(port), size, false); await io.pio(a); return le(a.data); },
    async write(addr: bigint, size: number, value: bigint): Promise<boolean> { return io.mmio(withValue(addr, size, value)); },
    async read(addr: bigint, size: number): Promise<bigint> { const a = access(addr, size, false); if (!(await io.mmio(a))) a.data.fill(0xff); return le(a.data); },
    async config(slot: number, reg: number, size = 4): Promise<number> {
      await this.out(0xcf8, 4, enable(slot, reg & ~3));
      return Number(await this.in(0xcfc + (reg & 3), size));
    },
    async setConfig(slot: number, reg: number, size: number, value: number): Promise<void> {
      await this.out(0xcf8, 4, enable(slot, reg & ~3));
      await this.out(0xcfc + (reg & 3), size, value);
    },
  };
}

describe('the PCI host bridge (config mechanism #1 and BAR decoding)', () => {
  it('lets a guest find the nic, size and place its BARs, and reach its registers only while memory decode is on', async () => {
    const host = new SimHost(simMachine({ edus: 0, nics: 1 }));
    const vmm = await Vmm.create({ host, plugins: [legacyType1Plugin(), vfioPciPlugin()], memory: [{ gpa: 0n, size: 16n << 20n }] });
    try {
      const nic = (await vmm.addDevice(`vfio-pci,id=nic0,host=${NIC_A}`)) as VfioPciDevice;
      const io = new IoBus();
      const bridge = new PciHostBridge(vmm.pciBus, io);
      const g = cpu(io);
      // The bridge itself in slot 0, the nic in slot 1, nothing else.
      expect(await g.config(0, 0)).toBe(0x29c0_8086);
      expect((await g.config(0, 8)) >>> 8).toBe(0x06_0000);
      expect(await g.config(1, 0)).toBe(0x4e49_1234);
      expect(await g.config(2, 0)).toBe(0xffff_ffff);
      expect(await g.in(0xcf8, 4)).toBe(BigInt(enable(2, 0)));
      // Disabled config cycles and functions other than 0 reach nothing.
      await g.out(0xcf8, 4, (1 << 11));
      expect(await g.in(0xcfc, 4)).toBe(0xffff_ffffn);
      expect(await g.config(1, 0x100)).toBe(0xffff_ffff); // function 1 (bit 8): master abort
      // Narrow reads of the data window pick the byte lanes.
      expect(await g.config(1, 2, 2)).toBe(0x4e49);
      expect(await g.config(1, 1, 1)).toBe(0x12);
      // Sizing BAR0 by all ones, as firmware does.
      await g.setConfig(1, 0x10, 4, 0xffff_ffff);
      expect(await g.config(1, 0x10)).toBe(0xffff_c000); // 16 KiB, 32-bit memory
      await g.setConfig(1, 0x10, 4, 0xe000_0000);
      await g.setConfig(1, 0x18, 4, 0xe010_0000);
      await g.setConfig(1, 0x1c, 4, 0);
      // Decode off: the BAR is not there.
      await g.setConfig(1, 0x04, 2, (await g.config(1, 0x04, 2)) & ~0x2);
      expect(await g.read(0xe000_0000n + BigInt(NIC_ID), 4)).toBe(0xffff_ffffn);
      expect(bridge.windows.windows).toEqual([]);
      await g.setConfig(1, 0x04, 2, (await g.config(1, 0x04, 2)) | 0x2);
      expect(await g.read(0xe000_0000n + BigInt(NIC_ID), 4)).toBe(BigInt(NIC_ID_VALUE));
      expect(await g.write(0xe000_0000n + BigInt(NIC_RX_RING_SIZE), 4, 32n)).toBe(true);
      expect(await nic.barRead(0, NIC_RX_RING_SIZE, 4)).toBe(32n);
      // The 64-bit BAR2 and its device memory; an access past its end goes nowhere.
      expect(await g.write(0xe010_0100n, 8, 0x1122_3344_5566_7788n)).toBe(true);
      expect(await nic.barRead(2, 0x100, 8)).toBe(0x1122_3344_5566_7788n);
      expect(await g.read(0xe010_0000n + 0x10000n, 4)).toBe(0xffff_ffffn);
      // Moved by the guest: the old address is empty, the new one decodes.
      await g.setConfig(1, 0x10, 4, 0xe020_0000);
      expect(await g.read(0xe000_0000n, 4)).toBe(0xffff_ffffn);
      expect(await g.read(0xe020_0000n, 4)).toBe(BigInt(NIC_ID_VALUE));
      // Unplugged: its slot reads as empty and its BARs are gone once the bridge looks again.
      await vmm.removeDevice('nic0');
      bridge.invalidate();
      expect(await g.config(1, 0)).toBe(0xffff_ffff);
      expect(await g.read(0xe020_0000n, 4)).toBe(0xffff_ffffn);
      bridge.detach();
      expect(await g.out(0xcf8, 4, 0)).toBe(false);
    } finally {
      await vmm.close();
    }
  });

  it('awaits functions that answer asynchronously, for config cycles and BARs', async () => {
    const later = <T>(v: T): Promise<T> => new Promise((r) => setTimeout(() => r(v), 2));
    const config = new DataView(new ArrayBuffer(256));
    config.setUint32(0, 0xabcd_1af4, true);
    const writes: string[] = [];
    const fn: PciFunction = {
      id: 'slow', driver: 'test', name: 'slow', unrealize: async () => {},
      configRead: (o, s) => later(s === 4 ? config.getUint32(o, true) : s === 2 ? config.getUint16(o, true) : config.getUint8(o)),
      configWrite: async (o, s, v) => {
        await later(0);
        if (o >= 0x10 && o < 0x14) v &= ~0xfff; // BAR0: 4 KiB
        if (s === 4) config.setUint32(o, v, true); else if (s === 2) config.setUint16(o, v, true); else config.setUint8(o, v);
      },
      barRead: (bar, offset) => later(BigInt(bar * 0x100 + offset)),
      barWrite: async (bar, offset, size, value) => { await later(0); writes.push(`${bar}+${offset}:${size}=${value}`); },
      barSize: (bar) => (bar === 0 ? 0x1000n : 0n),
    };
    const bus = new PciBus(new AddressSpace('test'));
    expect(bus.plug(fn)).toBe(1);
    expect(() => bus.plug(fn)).toThrow(ConfigError);
    const io = new IoBus();
    new PciHostBridge(bus, io);
    const g = cpu(io);
    expect(await g.config(1, 0)).toBe(0xabcd_1af4);
    await g.setConfig(1, 0x10, 4, 0xd000_0000);
    await g.setConfig(1, 0x04, 2, 0x2);
    expect(await g.read(0xd000_0010n, 2)).toBe(0x10n);
    await g.write(0xd000_0020n, 4, 0x55n);
    expect(writes).toEqual(['0+32:4=85']);
  });

  it('gives out the slots of bus 0 in order, says when it is full, and tells unplug listeners', () => {
    const bus = new PciBus(new AddressSpace('test'));
    const fns = Array.from({ length: 32 }, (_, i) => ({ id: `f${i}` }) as unknown as PciFunction);
    for (let i = 0; i < 31; i++) expect(bus.plug(fns[i]!)).toBe(i + 1);
    expect(() => bus.plug(fns[31]!)).toThrow(/all 31 slots of bus 0 are taken/);
    const heard: string[] = [];
    const stop = bus.onUnplug((fn, slot) => heard.push(`${fn.id}@${slot}`));
    bus.unplug(fns[4]!);
    bus.unplug(fns[4]!); // not on the bus any more: nothing to hear
    expect(heard).toEqual(['f4@5']);
    expect(bus.function(5)).toBeUndefined();
    expect(bus.plug(fns[31]!)).toBe(5);
    stop();
    bus.unplug(fns[31]!);
    expect(heard).toEqual(['f4@5']);
  });
});
