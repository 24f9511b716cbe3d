// GuestMemory on the real kernel (LinuxHost): RAM from mmap, vCPU-style writes, the dirty log.

import { readlinkSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MAP_SHARED, PROT_READ, PROT_WRITE } from '../src/uapi/index.js';
import {
  ConfigError, DirtyBitmap, GuestMemory, HostError, LinuxHost, MAX_RAM_BLOCK_SIZE, type HostKernel, type HostMapping, type RamBlock, type RamSpec,
} from '../src/index.js';

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

  it('backs blocks with memfds when asked: the file shares the bytes, findByHva finds them, free closes it', () => {
    const mem = GuestMemory.allocate(host, [{ gpa: 0n, size: MiB }, { gpa: 4n * MiB, size: MiB }], { backing: 'memfd' });
    const [a, b] = mem.blocks as [RamBlock, RamBlock];
    const fds = [a.fd!, b.fd!];
    let other: HostMapping | undefined;
    try {
      expect(fds.every((fd) => fd >= 0)).toBe(true);
      expect(readlinkSync(`/proc/self/fd/${a.fd}`)).toMatch(/^\/memfd:guest-ram:ram0/);
      // A second mapping of the file (what a vfio-user server makes) sees the guest's writes.
      other = host.mmap(0x1000, PROT_READ | PROT_WRITE, MAP_SHARED, b.fd!, 0x2000n);
      mem.write(4n * MiB + 0x2010n, new Uint8Array([7, 7]));
      expect([...other.view(0x10, 2)]).toEqual([7, 7]);
      expect(mem.findByHva(b.hva + 0x2000n, 0x1000n)).toEqual({ block: b, offset: 0x2000n });
      expect(mem.findByHva(b.hva + MiB - 0x800n, 0x1000n)).toBeUndefined();
    } finally {
      other?.unmap();
      mem.free();
    }
    for (const fd of fds) expect(() => readlinkSync(`/proc/self/fd/${fd}`)).toThrow();
    const anonymous = GuestMemory.allocate(host, [{ gpa: 0n, size: MiB }]);
    expect(anonymous.blocks[0]!.fd).toBeUndefined();
    anonymous.free();
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

/** `inner`, counting mmap calls and the mappings still mapped. */
function recordingHost(inner: HostKernel): { host: HostKernel; mmaps: () => number; live: Set<bigint> } {
  const live = new Set<bigint>();
  let mmaps = 0;
  const mmap: HostKernel['mmap'] = (...args) => {
    mmaps += 1;
    const m = inner.mmap(...args);
    live.add(m.addr);
    const tracked: HostMapping = {
      addr: m.addr, length: m.length, get bytes() { return m.bytes; }, view: (o, n) => m.view(o, n),
      unmap: () => { live.delete(m.addr); m.unmap(); },
    };
    return tracked;
  };
  const host = new Proxy(inner, {
    get: (target, key) => (key === 'mmap' ? mmap : Reflect.get(target, key, target)),
  });
  return { host, mmaps: () => mmaps, live };
}

/** The ConfigError `allocate` throws for `specs`. */
function allocateError(host: HostKernel, specs: RamSpec[]): ConfigError {
  try {
    GuestMemory.allocate(host, specs).free();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('allocate succeeded');
}

describe.skipIf(!onLinux)('GuestMemory sizes and addresses at the limits', () => {
  const linux = onLinux ? new LinuxHost() : undefined!;

  it('the largest block is 2^53 - 1 rounded down to whole pages: what an mmap length (a JS number) holds exactly', () => {
    expect(MAX_RAM_BLOCK_SIZE).toBe((BigInt(Number.MAX_SAFE_INTEGER) / 65536n) * 65536n);
  });

  it.for([
    ['2^60', 1n << 60n],
    ['2^64', 1n << 64n],
    ['2^53', 1n << 53n],
    ['the limit + 1 page', MAX_RAM_BLOCK_SIZE + 65536n],
  ] as const)('refuses a block of %s bytes, naming the memory option and the block, before mapping anything', ([, size]) => {
    const r = recordingHost(linux);
    const e = allocateError(r.host, [{ gpa: 0n, size: MiB, name: 'low' }, { gpa: 1n << 32n, size, name: 'high' }]);
    expect(e.option).toBe('memory');
    expect(e.message).toContain(`memory block high at 0x100000000 of 0x${size.toString(16)} bytes must be at most 0x${MAX_RAM_BLOCK_SIZE.toString(16)}`);
    expect(e.value).toBe(`high@0x100000000+0x${size.toString(16)}`);
    expect(r.mmaps()).toBe(0);
  });

  it('refuses a block that reaches past 2^64, and takes one that ends exactly there', () => {
    const r = recordingHost(linux);
    const e = allocateError(r.host, [{ gpa: 0xffff_ffff_ffff_f000n, size: 0x2000n }]);
    expect(e.option).toBe('memory');
    expect(e.message).toContain('memory block ram0 at 0xfffffffffffff000 of 0x2000 bytes must end within the 64-bit guest physical address space');
    expect(allocateError(r.host, [{ gpa: 1n << 64n, size: 0x1000n }]).message).toContain('must end within the 64-bit');
    expect(r.mmaps()).toBe(0);
    const top = GuestMemory.allocate(r.host, [{ gpa: 0xffff_ffff_ffff_f000n, size: 0x1000n }]);
    expect(top.find(0xffff_ffff_ffff_ffffn)?.name).toBe('ram0');
    top.free();
  });

  it('refuses a negative address and sizes given as numbers with a ConfigError, not a TypeError', () => {
    expect(allocateError(linux, [{ gpa: -0x1000n, size: MiB }]).message).toMatch(/ram0 at -0x1000 .* must not start below address 0/);
    const numeric = allocateError(linux, [{ gpa: 0n, size: 4096 as unknown as bigint }]);
    expect([numeric.option, numeric.message]).toEqual(['memory', 'memory block ram0: gpa and size must be bigints (got bigint and number)']);
  });

  it('turns a block the host cannot map into a ConfigError naming it, with the HostError as cause, and unmaps the blocks before it', () => {
    const r = recordingHost(linux);
    // Within what the port can express, but more address space than any Linux process has (47 to 52 bits).
    const e = allocateError(r.host, [{ gpa: 0n, size: MiB, name: 'low' }, { gpa: 1n << 32n, size: MAX_RAM_BLOCK_SIZE, name: 'huge' }]);
    expect(e.option).toBe('memory');
    expect(e.message).toBe(`memory block huge at 0x100000000 of 0x${MAX_RAM_BLOCK_SIZE.toString(16)} bytes cannot be mapped: mmap -> ENOMEM`);
    expect(e.cause).toBeInstanceOf(HostError);
    expect((e.cause as HostError).errno).toBe('ENOMEM');
    expect(r.mmaps()).toBe(2);
    expect(r.live.size).toBe(0);
  });
});
