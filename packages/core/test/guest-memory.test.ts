// GuestMemory on the real kernel (LinuxHost): RAM from mmap, vCPU-style writes, the dirty log.

import { describe, expect, it } from 'vitest';
import { ConfigError, DirtyBitmap, GuestMemory, LinuxHost } from '../src/index.js';

const onLinux = process.platform === 'linux';
const MiB = 1n << 20n;

describe.skipIf(!onLinux)('GuestMemory on LinuxHost', () => {
  const host = onLinux ? new LinuxHost() : undefined!;

  it('allocates blocks, reads back writes, and finds blocks by address', () => {
    const mem = GuestMemory.allocate(host, [{ gpa: 0x1_0000_0000n, size: 2n * MiB, name: 'high' }, { gpa: 0n, size: MiB }]);
    try {
      expect(mem.blocks.map((b) => b.name)).toEqual(['ram1', 'high']);
      mem.write(0x1_0000_0ff0n, new Uint8Array([1, 2, 3, 4]));
      expect([...mem.read(0x1_0000_0ff0n, 4)]).toEqual([1, 2, 3, 4]);
      expect(mem.find(0x1_001f_ffffn)?.name).toBe('high');
      expect(mem.find(0x1_0020_0000n)).toBeUndefined();
      expect(() => mem.write(MiB - 2n, new Uint8Array(4))).toThrow(/not inside one RAM block/);
    } finally {
      mem.free();
    }
  });

  it('refuses unaligned, empty and overlapping blocks', () => {
    expect(() => GuestMemory.allocate(host, [{ gpa: 0x800n, size: MiB }])).toThrow(ConfigError);
    expect(() => GuestMemory.allocate(host, [{ gpa: 0n, size: 0n }])).toThrow(/non-empty/);
    expect(() => GuestMemory.allocate(host, [{ gpa: 0n, size: 2n * MiB }, { gpa: MiB, size: MiB }])).toThrow(/overlaps/);
  });

  it('logs the pages vCPU writes touch, only while logging', () => {
    const mem = GuestMemory.allocate(host, [{ gpa: 0n, size: MiB }]);
    try {
      mem.write(0x0n, new Uint8Array(1));
      mem.startDirtyLog();
      mem.write(0x1ffen, new Uint8Array(4)); // pages 1 and 2
      mem.markDirty(0x10000n, 0x2000n); // pages 16, 17
      const report = new DirtyBitmap(4);
      report.setRange(0, 4);
      mem.mergeDirty(0x40000n, report); // pages 64..67
      const dirty: number[] = [];
      mem.blocks[0]!.dirty!.forEachSetBit((p) => dirty.push(p));
      expect(dirty).toEqual([1, 2, 16, 17, 64, 65, 66, 67]);
      mem.stopDirtyLog();
      expect(mem.logging).toBe(false);
    } finally {
      mem.free();
    }
  });

  it('lets the kernel write straight into a dirty bitmap through mapMemory', () => {
    const bitmap = new DirtyBitmap(4096);
    const path = '/proc/self/stat';
    const fd = host.open(path, 0);
    try {
      const m = host.mapMemory(bitmap.incoming);
      // pread(2) into the mapped address range writes the WebAssembly memory in place.
      expect(host.pread(fd, m.view(0, 8), 0n)).toBe(8);
      expect(bitmap.incoming.subarray(0, 8).some((b) => b !== 0)).toBe(true);
      expect(m.addr).toBeGreaterThan(0n);
      m.unmap();
    } finally {
      host.close(fd);
    }
  });
});
