// Device fd regions on the simulated host: config space as vfio-pci virtualizes it, BAR
// register access sizes and errors, the MSI-X table hidden from the user, and mmap.

import { describe, expect, it } from 'vitest';
import { MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE } from '@vmmkit/core/uapi';
import { SimHost } from '../src/index.js';
import { EDU_ID, EDU_LIVENESS } from '../src/devices/edu.js';
import { NIC_DOORBELL, NIC_ID, NIC_ID_VALUE, NIC_MSIX_TABLE, NIC_RX_PACKETS, NIC_RX_RING_BASE } from '../src/devices/nic-regs.js';
import {
  CONFIG, bar, deviceFile, expectErrno, openDevice, read16, read32, read64, write16, write32, write64,
} from './device-harness.js';

const EDU = '0000:00:03.0';
const NIC = '0000:00:04.0';
const machine = () => new SimHost({ devices: [{ bdf: EDU, model: 'edu' }, { bdf: NIC, model: 'nic' }] });

describe('config space through vfio-pci', () => {
  it('reads edu IDs, lets the user set Bus Master Enable (0x0103 -> 0x0107, as on realhost) and keeps IDs read-only', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    expect(read32(host, fd, CONFIG)).toBe(0x11e8_1234);
    expect(read16(host, fd, CONFIG + 4n)).toBe(0x0103);
    expect(host.kernel.device(EDU).busMaster).toBe(false);
    write16(host, fd, CONFIG + 4n, 0x0107);
    expect(read16(host, fd, CONFIG + 4n)).toBe(0x0107);
    expect(host.kernel.device(EDU).busMaster).toBe(true);
    write32(host, fd, CONFIG, 0xffff_ffff);
    expect(read32(host, fd, CONFIG)).toBe(0x11e8_1234);
    expect(host.readlink(`/sys/bus/pci/devices/${EDU}/iommu_group`)).toMatch(/iommu_groups/);
  });

  it('clears Bus Master Enable when the device is first opened, and again on last close', () => {
    const host = machine();
    host.kernel.device(EDU).model.config[4] |= 0x4; // firmware left it on
    const fd = openDevice(host, EDU);
    expect(host.kernel.device(EDU).busMaster).toBe(false);
    write16(host, fd, CONFIG + 4n, 0x0107);
    host.close(fd);
    expect(host.kernel.device(EDU).busMaster).toBe(false);
  });

  it('sizes BARs by writing all ones to the virtual BAR, without touching the device', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    const phys = new DataView(host.kernel.device(EDU).model.config.buffer).getUint32(0x10, true);
    expect(read32(host, fd, CONFIG + 0x10n)).toBe(phys);
    write32(host, fd, CONFIG + 0x10n, 0xffff_ffff);
    expect(read32(host, fd, CONFIG + 0x10n)).toBe(0xfff0_0000); // 1 MiB, 32-bit, non-prefetchable
    expect(new DataView(host.kernel.device(EDU).model.config.buffer).getUint32(0x10, true)).toBe(phys);
    write32(host, fd, CONFIG + 0x10n, 0xfea0_0000);
    expect(read32(host, fd, CONFIG + 0x10n)).toBe(0xfea0_0000);
    write32(host, fd, CONFIG + 0x14n, 0xffff_ffff);
    expect(read32(host, fd, CONFIG + 0x14n)).toBe(0); // unimplemented BAR
    write32(host, fd, CONFIG + 0x30n, 0xffff_ffff);
    expect(read32(host, fd, CONFIG + 0x30n)).toBe(0); // no ROM
  });

  it('virtualizes INTx disable: the user sees the bit, the device never does', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    write16(host, fd, CONFIG + 4n, 0x0503);
    expect(read16(host, fd, CONFIG + 4n)).toBe(0x0503);
    expect(host.kernel.device(EDU).model.config[5]! & 0x4).toBe(0);
  });

  it('reads multi-byte spans in aligned chunks and refuses accesses past the end with EFAULT', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    const buf = new Uint8Array(7);
    expect(host.pread(fd, buf, CONFIG + 1n)).toBe(7);
    expect([...buf.subarray(0, 3)]).toEqual([0x12, 0xe8, 0x11]);
    expectErrno(() => host.pread(fd, new Uint8Array(4), CONFIG + 254n), 'EFAULT');
    expectErrno(() => host.pread(fd, new Uint8Array(1), CONFIG + 256n), 'EFAULT');
    expect(host.pread(fd, new Uint8Array(0), 99n << 40n)).toBe(0);
    expectErrno(() => host.pread(fd, new Uint8Array(1), 9n << 40n), 'EINVAL');
  });

  it('reads the MSI capability from the virtual copy, so writes to it do not reach the device', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    expect(read16(host, fd, CONFIG + 0x40n) & 0xff).toBe(0x05);
    write16(host, fd, CONFIG + 0x42n, 0x0081);
    expect(read16(host, fd, CONFIG + 0x42n)).toBe(0x0081);
    expect(host.kernel.device(EDU).model.config[0x42]! & 1).toBe(0);
  });
});

describe('BAR access', () => {
  it('routes aligned 1, 2, 4 and 8-byte accesses to the model, splitting the rest', () => {
    const host = machine();
    const fd = openDevice(host, NIC);
    expect(read32(host, fd, bar(0, NIC_ID))).toBe(NIC_ID_VALUE);
    write64(host, fd, bar(0, NIC_RX_RING_BASE), 0x1_2345_6000n);
    expect(read64(host, fd, bar(0, NIC_RX_RING_BASE))).toBe(0x1_2345_6000n);
    expect(read32(host, fd, bar(0, NIC_RX_RING_BASE + 4))).toBe(1);
    expect(read16(host, fd, bar(0, NIC_ID + 2))).toBe(0x4e49);
    const odd = new Uint8Array(6);
    expect(host.pread(fd, odd, bar(0, 1))).toBe(6);
    expect([...odd.subarray(0, 3)]).toEqual([0x43, 0x49, 0x4e]);
    expect(read64(host, fd, bar(0, NIC_RX_PACKETS))).toBe(0n);
  });

  it('reads all ones from the MSI-X table and drops writes to it', () => {
    const host = machine();
    const fd = openDevice(host, NIC);
    write32(host, fd, bar(0, NIC_MSIX_TABLE), 0x1234);
    expect(read32(host, fd, bar(0, NIC_MSIX_TABLE))).toBe(0xffff_ffff);
    const span = new Uint8Array(16);
    expect(host.pread(fd, span, bar(0, NIC_MSIX_TABLE - 8))).toBe(16);
    expect([...span.subarray(8)]).toEqual(Array(8).fill(0xff));
  });

  it('clips at the end of a BAR and refuses offsets past it, missing BARs and the ROM', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    expect(host.pread(fd, new Uint8Array(16), bar(0, 0x100000 - 4))).toBe(4);
    expectErrno(() => host.pread(fd, new Uint8Array(4), bar(0, 0x100000)), 'EINVAL');
    expectErrno(() => host.pread(fd, new Uint8Array(4), bar(1)), 'EINVAL');
    expectErrno(() => host.pread(fd, new Uint8Array(4), bar(6)), 'EINVAL');
    expectErrno(() => host.pwrite(fd, new Uint8Array(4), bar(6)), 'EINVAL');
    expectErrno(() => host.pread(fd, new Uint8Array(4), bar(8)), 'EINVAL');
  });

  it('fails BAR access with EIO while memory decoding is off in the command register', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    write16(host, fd, CONFIG + 4n, 0x0101);
    expectErrno(() => read32(host, fd, bar(0, EDU_ID)), 'EIO');
    write16(host, fd, CONFIG + 4n, 0x0103);
    expect(read32(host, fd, bar(0, EDU_ID))).toBe(0x010000ed);
  });

  it('keeps a file position for read(2) and write(2)', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    const b = new Uint8Array(4);
    expect(host.read(fd, b)).toBe(4); // BAR0 at offset 0: the edu ID register
    expect(new DataView(b.buffer).getUint32(0, true)).toBe(0x010000ed);
    new DataView(b.buffer).setUint32(0, 0x12345678, true);
    expect(host.write(fd, b)).toBe(4); // offset 4: liveness
    expect(read32(host, fd, bar(0, EDU_LIVENESS))).toBe(0xedcba987);
  });
});

describe('mmap of BAR areas', () => {
  it("maps the NIC memory BAR's sparse areas, shared with read/write access, around its register page", () => {
    const host = machine();
    const fd = openDevice(host, NIC);
    const m = host.mmap(0x4000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, bar(2));
    m.bytes.set([1, 2, 3, 4], 8);
    expect(read32(host, fd, bar(2, 8))).toBe(0x04030201);
    write32(host, fd, bar(2, 16), 0xaabbccdd);
    expect([...m.bytes.subarray(16, 20)]).toEqual([0xdd, 0xcc, 0xbb, 0xaa]);
    const tail = host.mmap(0xb000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, bar(2, 0x5000));
    tail.bytes[0] = 7;
    expect(read32(host, fd, bar(2, 0x5000))).toBe(7);
    // The register page between them takes read/write only: its doorbell counts writes.
    write32(host, fd, bar(2, NIC_DOORBELL), 1);
    write32(host, fd, bar(2, NIC_DOORBELL), 1);
    expect(read32(host, fd, bar(2, NIC_DOORBELL))).toBe(2);
    m.unmap();
    tail.unmap();
  });

  it("reads all ones where edu decodes nothing, as QEMU's edu does (its DMA buffer is not in BAR0)", () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    expect(read32(host, fd, bar(0, 0x40000))).toBe(0xffffffff);
    write32(host, fd, bar(0, 0x40000), 0);
    expect(read32(host, fd, bar(0, 0x40000))).toBe(0xffffffff);
  });

  it('refuses private mappings, mappings outside the mmap areas, past the BAR, or of other regions', () => {
    const host = machine();
    const fd = openDevice(host, EDU);
    const nic = openDevice(host, NIC);
    const map = (f: number, len: number, off: bigint, flags = MAP_SHARED) => host.mmap(len, PROT_READ, flags, f, off);
    expectErrno(() => map(nic, 4096, bar(2), MAP_PRIVATE), 'EINVAL');
    expectErrno(() => map(fd, 4096, bar(0)), 'EINVAL'); // edu's BAR0 has no mmap areas
    expectErrno(() => map(nic, 0x5000, bar(2)), 'EINVAL'); // runs into the register page
    expectErrno(() => map(nic, 4096, bar(2, 0x4000)), 'EINVAL');
    expectErrno(() => map(nic, 4096, bar(2, 0x10000)), 'EINVAL');
    expectErrno(() => map(fd, 4096, CONFIG), 'EINVAL');
    expectErrno(() => map(nic, 4096, bar(0)), 'EINVAL');
  });

  it('keeps the device open while a mapping exists, like a vma holding the file', () => {
    const host = machine();
    const fd = openDevice(host, NIC);
    const m = host.mmap(4096, PROT_READ, MAP_SHARED, fd, bar(2));
    const file = deviceFile(host, fd);
    host.close(fd);
    expect(file.released).toBe(false);
    expect(host.census().objects.device_open).toBe(1);
    m.unmap();
    expect(file.released).toBe(true);
    expect(host.census()).toEqual({ fds: 0, objects: {} });
  });
});
