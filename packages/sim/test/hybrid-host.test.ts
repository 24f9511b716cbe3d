// The simulated kernel beside a real one: memory the process already has adopted at its own
// address (mmap MAP_FIXED_NOREPLACE's errnos), and HybridHost routing each call to the real
// host or the simulated one, with every real mapping adopted for the simulated devices' DMA.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { HostError, LinuxHost } from '@vmmkit/core';
import { MAP_ANONYMOUS, MAP_PRIVATE, MFD_CLOEXEC, O_RDWR, PROT_READ, PROT_WRITE } from '@vmmkit/core/uapi';
import { HYBRID_SIM_FIRST_FD, HYBRID_SIM_MAPPING_BASE, HybridHost, SimErrno, SimHost, simMachine } from '../src/index.js';

/** A stand-in for a real mapping: bytes at an address of our choosing. */
function memoryAt(addr: bigint, length: number) {
  const bytes = new Uint8Array(length);
  return { addr, length, bytes, view: (o: number, n: number) => bytes.subarray(o, o + n) };
}

const errnoOf = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    return e instanceof HostError ? e.errno : e instanceof SimErrno ? `kernel-internal ${e.code}` : `not a HostError: ${String(e)}`;
  }
  return undefined;
};

/** Whether the real process has memory mapped at `addr` (the kernel may merge neighbouring mappings into one line). */
const reallyMapped = (addr: bigint): boolean =>
  readFileSync('/proc/self/maps', 'utf8').split('\n').some((l) => {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(l);
    return m !== null && BigInt(`0x${m[1]}`) <= addr && addr < BigInt(`0x${m[2]}`);
  });

describe('SimHost.adoptMapping', () => {
  it('resolves the adopted address to the very bytes, until the adoption is unmapped', () => {
    const host = new SimHost();
    const mem = memoryAt(0x5000_0000n, 0x3000);
    const before = host.census().objects.mapping ?? 0;
    const adopted = host.adoptMapping(mem);
    expect(adopted.addr).toBe(mem.addr);
    host.kernel.memory.write(mem.addr + 0x1ffcn, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
    expect([...mem.bytes.subarray(0x1ffc, 0x2004)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    mem.bytes[0x2fff] = 0x77;
    expect(host.kernel.memory.read(mem.addr + 0x2fffn, 1)).toEqual(new Uint8Array([0x77]));
    expect(host.census().objects.mapping).toBe(before + 1);
    adopted.unmap();
    expect(host.census().objects.mapping ?? 0).toBe(before);
    expect(errnoOf(() => host.kernel.memory.read(mem.addr, 1))).toBe('kernel-internal EFAULT');
    expect(mem.bytes[0x2fff]).toBe(0x77); // the memory itself is left alone
  });

  it('refuses what mmap with MAP_FIXED_NOREPLACE refuses, by errno', () => {
    const host = new SimHost();
    expect(errnoOf(() => host.adoptMapping(memoryAt(0x5000_0800n, 0x1000)))).toBe('EINVAL');
    expect(errnoOf(() => host.adoptMapping({ ...memoryAt(0x5000_0000n, 0x1000), length: 0 }))).toBe('EINVAL');
    expect(errnoOf(() => host.adoptMapping(memoryAt((1n << 47n) - 0x1000n, 0x2000)))).toBe('ENOMEM');
    const first = host.adoptMapping(memoryAt(0x5000_0000n, 0x2000));
    expect(errnoOf(() => host.adoptMapping(memoryAt(0x5000_1000n, 0x1000)))).toBe('EEXIST');
    first.unmap();
    host.adoptMapping(memoryAt(0x5000_1000n, 0x1000)).unmap();
    host.injectFault({ syscall: 'mmap', errno: 'ENOMEM' });
    expect(errnoOf(() => host.adoptMapping(memoryAt(0x5000_0000n, 0x1000)))).toBe('ENOMEM');
  });

  it('adopts memory given an address without mmap at exactly its bytes', () => {
    const host = new SimHost();
    const a = host.adoptMemory(memoryAt(0x5000_0010n, 0x20));
    const b = host.adoptMemory(memoryAt(0x5000_0030n, 0x10)); // the same page, the next bytes
    expect(errnoOf(() => host.adoptMemory(memoryAt(0x5000_0020n, 0x20)))).toBe('EEXIST');
    expect(errnoOf(() => host.adoptMemory({ ...memoryAt(0x5000_0100n, 1), length: 0 }))).toBe('EINVAL');
    host.kernel.memory.write(0x5000_002en, new Uint8Array([1, 2, 3, 4]));
    expect(host.kernel.memory.read(0x5000_002en, 4)).toEqual(new Uint8Array([1, 2, 3, 4]));
    a.unmap();
    b.unmap();
  });

  it('keeps its own mappings clear of adopted memory', () => {
    const host = new SimHost();
    const adopted = host.adoptMapping(memoryAt(0x7f00_0000_0000n, 0x10_0000));
    const own = host.mmap(0x2000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
    expect(own.addr >= 0x7f00_0010_0000n).toBe(true);
    own.unmap();
    adopted.unmap();
  });
});

describe('HybridHost', () => {
  it('maps real memory and lets the simulated kernel reach it at the same address', () => {
    const host = HybridHost.create(simMachine({ edus: 1, nics: 0 }));
    const before = host.sim.census();
    const m = host.mmap(0x4000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
    expect(m.addr < HYBRID_SIM_MAPPING_BASE).toBe(true);
    expect(reallyMapped(m.addr)).toBe(true);
    m.bytes.set([9, 8, 7], 0x3000);
    expect(host.sim.kernel.memory.read(m.addr + 0x3000n, 3)).toEqual(new Uint8Array([9, 8, 7]));
    host.sim.kernel.memory.write(m.addr + 16n, new Uint8Array([0xaa]));
    expect(m.bytes[16]).toBe(0xaa);
    m.unmap();
    expect(reallyMapped(m.addr)).toBe(false);
    expect(host.sim.census()).toEqual(before);
  });

  it('gives typed arrays a real address the simulated kernel reaches too', () => {
    const host = HybridHost.create(simMachine({ edus: 1, nics: 0 }));
    const bytes = new Uint8Array(100);
    const m = host.mapMemory(bytes);
    host.sim.kernel.memory.write(m.addr + 99n, new Uint8Array([0x42]));
    expect(bytes[99]).toBe(0x42);
    m.unmap();
    expect(host.sim.census().objects.mapping ?? 0).toBe(0);
  });

  it('gives the simulated machine its paths and fds, and the real host KVM, memfds and memory', () => {
    const real = new LinuxHost();
    const host = HybridHost.create(simMachine({ edus: 1, nics: 0 }), real);
    const container = host.open('/dev/vfio/vfio', O_RDWR);
    expect(container).toBeGreaterThanOrEqual(HYBRID_SIM_FIRST_FD);
    expect(host.readlink(`/proc/self/fd/${container}`)).toBe('/dev/vfio/vfio');
    const efd = host.eventfd(0, 0);
    expect(efd).toBeGreaterThanOrEqual(HYBRID_SIM_FIRST_FD);
    const memfd = host.memfdCreate('hybrid-test', MFD_CLOEXEC);
    expect(memfd).toBeLessThan(HYBRID_SIM_FIRST_FD);
    expect(host.readlink(`/proc/self/fd/${memfd}`)).toMatch(/^\/memfd:hybrid-test/);
    host.ftruncate(memfd, 0x1000n);
    const shared = host.mmap(0x1000, PROT_READ | PROT_WRITE, 0x01 /* MAP_SHARED */, memfd, 0n);
    shared.bytes[5] = 42;
    expect(host.sim.kernel.memory.read(shared.addr + 5n, 1)[0]).toBe(42);
    shared.unmap();
    for (const fd of [container, efd, memfd]) host.close(fd);
    expect(host.sim.census().fds).toBe(0);
    expect(errnoOf(() => host.close(container))).toBe('EBADF');
  });

  it('releases the real mapping when the simulated kernel cannot adopt it', () => {
    const linux = new LinuxHost();
    const mapped: bigint[] = [];
    const real = new Proxy(linux, {
      get(target, p) {
        if (p === 'mmap') return (...a: Parameters<LinuxHost['mmap']>) => { const m = target.mmap(...a); mapped.push(m.addr); return m; };
        const v = Reflect.get(target, p, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const host = HybridHost.create(simMachine({ edus: 1, nics: 0 }), real);
    host.sim.injectFault({ syscall: 'mmap', errno: 'ENOMEM' });
    expect(errnoOf(() => host.mmap(0x2000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n))).toBe('ENOMEM');
    expect(mapped).toHaveLength(1);
    expect(reallyMapped(mapped[0]!)).toBe(false);
    expect(host.sim.census().objects.mapping ?? 0).toBe(0);
  });
});
