// IOAS ioctls as drivers/iommu/iommufd/ioas.c and io_pagetable.c behave: MAP, UNMAP, COPY,
// IOVA_RANGES, ALLOW_IOVAS, OPTION and VFIO_IOAS, with every documented errno. On SimHost and, in
// the kernel tier, on the real kernel (the cases that attach a device use its edu devices, behind
// QEMU's VT-d with the same 39-bit aperture as SimHost's first IOMMU here).

import { afterEach, describe, expect, it } from 'vitest';
import { type HostKernel } from '@vmmkit/core';
import {
  IOMMU_IOAS_ALLOC, IOMMU_IOAS_ALLOW_IOVAS, IOMMU_IOAS_COPY, IOMMU_IOAS_IOVA_RANGES, IOMMU_IOAS_MAP,
  IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, IOMMU_IOAS_UNMAP, IOMMU_OPTION,
  IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, IOMMU_OPTION_OP_SET, IOMMU_OPTION_RLIMIT_MODE, IOMMU_VFIO_IOAS,
  IOMMU_VFIO_IOAS_CLEAR, IOMMU_VFIO_IOAS_GET, IOMMU_VFIO_IOAS_SET, iommu_ioas_alloc, iommu_ioas_allow_iovas,
  iommu_ioas_copy, iommu_ioas_iova_ranges, iommu_ioas_map, iommu_ioas_unmap, iommu_iova_range, iommu_option,
  iommu_vfio_ioas, PROT_READ,
} from '@vmmkit/core/uapi';
import { anon, busMaster, call, Cdev, fails, Iommufd, MACHINE, machine, PAGE, RW } from './iommufd-helpers.js';
import { iommufdTargets, isSim, onTarget, pciCdev, type HostTarget } from './host-targets.js';

const U64_MAX = 0xffff_ffff_ffff_ffffn;
const MB = 1n << 20n;

function option(io: Iommufd<HostKernel>, option_id: number, op: number, object_id = 0, val64 = 0n): bigint {
  return call(io.host, io.fd, IOMMU_OPTION, iommu_option, { option_id, op, object_id, val64 }).val64;
}

/** The IOAS cases on one host: a fresh SimHost per case, or the real kernel. */
function describeIoas(target: HostTarget): void {
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const release of cleanup.splice(0).reverse()) release();
  });
  /** An iommufd on a fresh host (on SimHost, the standard machine), closed after the case. */
  const open = (): Iommufd<HostKernel> => {
    const io = new Iommufd(target.host(MACHINE));
    cleanup.push(() => io.close());
    return io;
  };
  const setup = () => {
    const io = open();
    return { io, host: io.host, ioas: io.ioasAlloc() };
  };
  const cdevs = [pciCdev(target, 0), pciCdev(target, 1)];
  /** The host's n-th PCI device's cdev, closed after the case (before its iommufd). */
  const device = (host: HostKernel, n: number): Cdev<HostKernel> => {
    const dev = new Cdev(host, cdevs[n]!.index!);
    cleanup.push(() => dev.close());
    return dev;
  };
  const missing = cdevs.find((c) => c.unavailable)?.unavailable;
  /** A case that attaches the host's PCI devices; skipped, with the reason, where there are none. */
  const withDevice = (title: string, fn: () => void): void =>
    it.skipIf(missing !== undefined)(missing ? `${title} (skipped: ${missing})` : title, fn);

  describe.skipIf(target.unavailable !== undefined)(onTarget('IOAS ioctls', target), () => {
    describe('IOMMU_IOAS_ALLOC', () => {
      it('takes no flags', () => {
        const io = open();
        fails('EOPNOTSUPP', () => call(io.host, io.fd, IOMMU_IOAS_ALLOC, iommu_ioas_alloc, { flags: 1 }));
        expect(io.ioasAlloc()).toBe(1);
      });
    });

    describe('IOMMU_IOAS_MAP', () => {
      it('maps at a fixed IOVA and refuses overlaps with EEXIST', () => {
        const { io, host, ioas } = setup();
        const buf = anon(host, 16n * PAGE);
        expect(io.map(ioas, buf.addr, 16n * PAGE, 0x100000n)).toBe(0x100000n);
        fails('EEXIST', () => io.map(ioas, buf.addr, PAGE, 0x10f000n));
        fails('EEXIST', () => io.map(ioas, buf.addr, 32n * PAGE, 0xf0000n));
        expect(io.map(ioas, buf.addr, PAGE, 0x110000n)).toBe(0x110000n);
      });

      it('chooses an IOVA: never 0, aligned to the length or the user address, within allowed ranges', () => {
        const { io, host, ioas } = setup();
        const buf = anon(host, 2n * MB);
        const a = io.map(ioas, buf.addr, 64n * 1024n);
        expect(a).not.toBe(0n);
        expect(a % (64n * 1024n)).toBe(0n);
        const b = io.map(ioas, buf.addr + PAGE, PAGE);
        expect(b % PAGE).toBe(0n);
        expect(b).not.toBe(a);
      });

      it('checks flags, reserved bits, overflow and length', () => {
        const { io, host, ioas } = setup();
        const buf = anon(host, PAGE);
        const map = (v: object) => call(host, io.fd, IOMMU_IOAS_MAP, iommu_ioas_map, { ioas_id: ioas, user_va: buf.addr, length: PAGE, flags: RW, ...v });
        fails('EOPNOTSUPP', () => map({ flags: RW | 8 }));
        fails('EOPNOTSUPP', () => map({ __reserved: 1 }));
        fails('EOVERFLOW', () => map({ flags: RW | IOMMU_IOAS_MAP_FIXED_IOVA, iova: U64_MAX }));
        fails('EOVERFLOW', () => map({ length: U64_MAX }));
        fails('EINVAL', () => map({ flags: 0 }));
        fails('EINVAL', () => map({ length: 0n }));
        fails('ENOENT', () => map({ ioas_id: 99 }));
        fails('EOVERFLOW', () => map({ user_va: U64_MAX - 10n }));
      });

      withDevice('pins only when a domain needs the memory: a bad address maps, then the attach faults', () => {
        const { io, host, ioas } = setup();
        io.map(ioas, 0x1000n, PAGE, 0x100000n); // nothing is mapped at user address 0x1000
        const dev = device(host, 0);
        dev.bind(io.fd);
        fails('EFAULT', () => dev.attach(ioas));
        if (isSim(host)) expect(host.census().objects.hwpt).toBeUndefined();
        io.unmap(ioas, 0x100000n, PAGE);
        dev.attach(ioas);
        fails('EFAULT', () => io.map(ioas, 0x1000n, PAGE, 0x200000n));
        const ro = anon(host, PAGE, PROT_READ);
        fails('EFAULT', () => io.map(ioas, ro.addr, PAGE, 0x200000n));
        io.map(ioas, ro.addr, PAGE, 0x200000n, IOMMU_IOAS_MAP_READABLE);
      });

      withDevice('follows the alignment and reserved ranges an attached device brings', () => {
        const { io, host, ioas } = setup();
        const dev = device(host, 0);
        dev.bind(io.fd);
        dev.attach(ioas);
        const buf = anon(host, 4n * PAGE);
        fails('EINVAL', () => io.map(ioas, buf.addr, PAGE, 0x100800n)); // IOVA alignment is now 4 KiB
        fails('EINVAL', () => io.map(ioas, buf.addr, PAGE + 0x800n, 0x100000n)); // so is the length
        fails('EINVAL', () => io.map(ioas, buf.addr + 0x800n, PAGE, 0x100000n)); // and the user offset
        fails('EINVAL', () => io.map(ioas, buf.addr, PAGE, 0xfee00000n)); // the MSI window is reserved
        fails('EINVAL', () => io.map(ioas, buf.addr, PAGE, 1n << 39n)); // beyond the 39-bit aperture
      });
    });

    describe('IOMMU_IOAS_UNMAP', () => {
      it('unmaps whole areas and returns the length; ENOENT when one sticks out or nothing is there', () => {
        const { io, host, ioas } = setup();
        const buf = anon(host, 16n * PAGE);
        io.map(ioas, buf.addr, 4n * PAGE, 0x100000n);
        io.map(ioas, buf.addr, 4n * PAGE, 0x104000n);
        fails('ENOENT', () => io.unmap(ioas, 0x100000n, 2n * PAGE));
        fails('ENOENT', () => io.unmap(ioas, 0x200000n, PAGE));
        expect(io.unmap(ioas, 0xf0000n, 0x30000n)).toBe(8n * PAGE);
        fails('ENOENT', () => io.unmap(ioas, 0x100000n, 4n * PAGE));
      });

      it('stops at an area sticking out of the range, keeping what it unmapped before', () => {
        const { io, host, ioas } = setup();
        const buf = anon(host, 16n * PAGE);
        io.map(ioas, buf.addr, 4n * PAGE, 0x100000n);
        io.map(ioas, buf.addr, 4n * PAGE, 0x104000n);
        fails('ENOENT', () => io.unmap(ioas, 0x100000n, 6n * PAGE));
        fails('ENOENT', () => io.unmap(ioas, 0x100000n, 4n * PAGE)); // already gone
        expect(io.unmap(ioas, 0x104000n, 4n * PAGE)).toBe(4n * PAGE);
      });

      it('unmaps everything for iova 0 and length U64_MAX, even when empty', () => {
        const { io, host, ioas } = setup();
        const buf = anon(host, 16n * PAGE);
        io.map(ioas, buf.addr, 4n * PAGE, 0x100000n);
        io.map(ioas, buf.addr, 2n * PAGE, 0x300000n);
        expect(io.unmap(ioas, 0n, U64_MAX)).toBe(6n * PAGE);
        expect(io.unmap(ioas, 0n, U64_MAX)).toBe(0n);
        fails('EINVAL', () => io.unmap(ioas, 0x100000n, 0n));
        fails('EOVERFLOW', () => io.unmap(ioas, 1n, U64_MAX));
        fails('EOVERFLOW', () => io.unmap(ioas, U64_MAX - 1n, 4n));
        fails('ENOENT', () => call(host, io.fd, IOMMU_IOAS_UNMAP, iommu_ioas_unmap, { ioas_id: 42, length: 1n }));
      });
    });

    describe('IOMMU_IOAS_COPY', () => {
      it('maps the pages behind a range of one IOAS into another', () => {
        const { io, host, ioas } = setup();
        const dst = io.ioasAlloc();
        const buf = anon(host, 8n * PAGE);
        io.map(ioas, buf.addr, 4n * PAGE, 0x100000n);
        io.map(ioas, buf.addr + 4n * PAGE, 4n * PAGE, 0x104000n);
        const copy = (v: object) => call(host, io.fd, IOMMU_IOAS_COPY, iommu_ioas_copy, {
          dst_ioas_id: dst, src_ioas_id: ioas, length: 6n * PAGE, src_iova: 0x101000n, flags: RW, ...v,
        });
        expect(copy({}).dst_iova).not.toBe(0n);
        expect(copy({ flags: RW | IOMMU_IOAS_MAP_FIXED_IOVA, dst_iova: 0x500000n }).dst_iova).toBe(0x500000n);
        fails('EEXIST', () => copy({ flags: RW | IOMMU_IOAS_MAP_FIXED_IOVA, dst_iova: 0x500000n }));
        fails('ENOENT', () => copy({ length: 12n * PAGE }));
        fails('EINVAL', () => copy({ length: 0n }));
        fails('EOPNOTSUPP', () => copy({ flags: RW | 16 }));
        fails('EINVAL', () => copy({ flags: 0 }));
        fails('ENOENT', () => copy({ dst_ioas_id: 99 }));
        fails('ENOENT', () => copy({ src_ioas_id: 99 }));
        // The copy is six pages, in two areas: unmap one whole area.
        expect(io.unmap(dst, 0x500000n, 3n * PAGE)).toBe(3n * PAGE);
      });

      it('refuses to make read-only pages writeable (EPERM)', () => {
        const { io, host, ioas } = setup();
        const dst = io.ioasAlloc();
        const buf = anon(host, PAGE);
        io.map(ioas, buf.addr, PAGE, 0x100000n, IOMMU_IOAS_MAP_READABLE);
        const copy = { dst_ioas_id: dst, src_ioas_id: ioas, length: PAGE, src_iova: 0x100000n };
        fails('EPERM', () => call(host, io.fd, IOMMU_IOAS_COPY, iommu_ioas_copy, { ...copy, flags: IOMMU_IOAS_MAP_WRITEABLE }));
        call(host, io.fd, IOMMU_IOAS_COPY, iommu_ioas_copy, { ...copy, flags: IOMMU_IOAS_MAP_READABLE });
      });
    });

    describe('IOMMU_IOAS_IOVA_RANGES', () => {
      withDevice('reports the ranges a VT-d device leaves, as the real kernel did (realhost probe)', () => {
        const { io, host, ioas } = setup();
        const dev = device(host, 0);
        dev.bind(io.fd);
        dev.attach(ioas);
        expect(io.ranges(ioas)).toEqual([
          { start: 0n, last: 0xfedfffffn },
          { start: 0xfef00000n, last: 0x7fffffffffn },
        ]);
        const out = call(host, io.fd, IOMMU_IOAS_IOVA_RANGES, iommu_ioas_iova_ranges, { ioas_id: ioas, num_iovas: 2, allowed_iovas: anon(host, 64).addr });
        expect(out.out_iova_alignment).toBe(PAGE);
      });

      withDevice('answers EMSGSIZE with the count when the array is short, and EOPNOTSUPP for __reserved', () => {
        const { io, host, ioas } = setup();
        const dev = device(host, 0);
        dev.bind(io.fd);
        dev.attach(ioas);
        const b = iommu_ioas_iova_ranges.encode({ ioas_id: ioas, num_iovas: 0 });
        fails('EMSGSIZE', () => host.ioctl(io.fd, IOMMU_IOAS_IOVA_RANGES, b));
        expect(iommu_ioas_iova_ranges.get(b, 'num_iovas')).toBe(2);
        fails('EFAULT', () => call(host, io.fd, IOMMU_IOAS_IOVA_RANGES, iommu_ioas_iova_ranges, { ioas_id: ioas, num_iovas: 2, allowed_iovas: 0x10n }));
        fails('EOPNOTSUPP', () => call(host, io.fd, IOMMU_IOAS_IOVA_RANGES, iommu_ioas_iova_ranges, { ioas_id: ioas, __reserved: 1 }));
        fails('ENOENT', () => call(host, io.fd, IOMMU_IOAS_IOVA_RANGES, iommu_ioas_iova_ranges, { ioas_id: 77 }));
      });
    });

    describe('IOMMU_IOAS_ALLOW_IOVAS', () => {
      function allow(io: Iommufd<HostKernel>, ioas: number, ranges: [bigint, bigint][], extra: object = {}): void {
        const buf = anon(io.host, Math.max(1, ranges.length) * iommu_iova_range.size);
        ranges.forEach(([start, last], i) => buf.bytes.set(iommu_iova_range.encode({ start, last }), i * iommu_iova_range.size));
        call(io.host, io.fd, IOMMU_IOAS_ALLOW_IOVAS, iommu_ioas_allow_iovas, { ioas_id: ioas, num_iovas: ranges.length, allowed_iovas: buf.addr, ...extra });
      }

      it('limits automatic IOVAs to the allowed ranges (ENOSPC when they are full), not fixed ones', () => {
        const { io, host, ioas } = setup();
        allow(io, ioas, [[0x4000_0000n, 0x4000_3fffn]]);
        const buf = anon(host, 8n * PAGE);
        expect(io.map(ioas, buf.addr, 4n * PAGE)).toBe(0x4000_0000n);
        fails('ENOSPC', () => io.map(ioas, buf.addr, PAGE));
        expect(io.map(ioas, buf.addr, PAGE, 0x10000n)).toBe(0x10000n);
        allow(io, ioas, []);
        io.map(ioas, buf.addr, PAGE);
      });

      withDevice('refuses empty and overlapping ranges (EINVAL) and reserved ones (EADDRINUSE), changing nothing', () => {
        const { io, host, ioas } = setup();
        fails('EINVAL', () => allow(io, ioas, [[0x5000n, 0x5000n]]));
        fails('EINVAL', () => allow(io, ioas, [[0x1000n, 0x4fffn], [0x3000n, 0x8fffn]]));
        fails('EOPNOTSUPP', () => allow(io, ioas, [], { __reserved: 1 }));
        fails('EFAULT', () => call(host, io.fd, IOMMU_IOAS_ALLOW_IOVAS, iommu_ioas_allow_iovas, { ioas_id: ioas, num_iovas: 1, allowed_iovas: 8n }));
        const dev = device(host, 0);
        dev.bind(io.fd);
        dev.attach(ioas);
        fails('EADDRINUSE', () => allow(io, ioas, [[0xfe000000n, 0xfeffffffn]]));
        allow(io, ioas, [[0x100000n, 0x1fffffn]]);
        // A device whose reserved region lies in an allowed range cannot join (EADDRINUSE).
        const other = io.ioasAlloc();
        allow(io, other, [[0xfee00000n, 0xfee0ffffn]]);
        const dev2 = device(host, 1);
        dev2.bind(io.fd);
        fails('EADDRINUSE', () => dev2.attach(other));
      });
    });

    describe('IOMMU_OPTION', () => {
      it('RLIMIT_MODE is per context and only changes while it is empty', () => {
        const io = open();
        expect(option(io, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET)).toBe(0n);
        expect(option(io, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, 1n)).toBe(1n);
        expect(option(io, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET)).toBe(1n);
        fails('EINVAL', () => option(io, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, 2n));
        fails('EOPNOTSUPP', () => option(io, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 1));
        io.ioasAlloc();
        fails('EBUSY', () => option(io, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, 0n));
      });

      withDevice('HUGE_PAGES is per IOAS; it cannot be disabled once domains map pages', () => {
        const { io, host, ioas } = setup();
        expect(option(io, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, ioas)).toBe(1n);
        option(io, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, 0n);
        expect(option(io, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, ioas)).toBe(0n);
        option(io, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, 1n);
        fails('EINVAL', () => option(io, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, 5n));
        fails('ENOENT', () => option(io, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, 99));
        fails('EOPNOTSUPP', () => option(io, IOMMU_OPTION_HUGE_PAGES, 7, ioas));
        fails('EOPNOTSUPP', () => option(io, 9, IOMMU_OPTION_OP_GET, ioas));
        fails('EOPNOTSUPP', () => call(host, io.fd, IOMMU_OPTION, iommu_option, { option_id: 0, __reserved: 1 }));
        const dev = device(host, 0);
        dev.bind(io.fd);
        dev.attach(ioas);
        io.map(ioas, anon(host, PAGE).addr, PAGE, 0x100000n);
        fails('EINVAL', () => option(io, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, 0n));
      });

      it('with HUGE_PAGES off the IOAS is PAGE_SIZE aligned even without domains', () => {
        const { io, host, ioas } = setup();
        option(io, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, 0n);
        fails('EINVAL', () => io.map(ioas, anon(host, PAGE).addr, 0x800n, 0x100000n));
        const other = io.ioasAlloc();
        io.map(other, anon(host, PAGE).addr, 0x800n, 0x100000n);
        fails('EADDRINUSE', () => option(io, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, other, 0n));
      });
    });

    describe('IOMMU_VFIO_IOAS', () => {
      it('gets, sets and clears the IOAS of the VFIO compat container', () => {
        const io = open();
        const vfio = (op: number, ioas_id = 0) => call(io.host, io.fd, IOMMU_VFIO_IOAS, iommu_vfio_ioas, { op, ioas_id });
        fails('ENODEV', () => vfio(IOMMU_VFIO_IOAS_GET));
        fails('ENOENT', () => vfio(IOMMU_VFIO_IOAS_SET, 5));
        const ioas = io.ioasAlloc();
        vfio(IOMMU_VFIO_IOAS_SET, ioas);
        expect(vfio(IOMMU_VFIO_IOAS_GET).ioas_id).toBe(ioas);
        vfio(IOMMU_VFIO_IOAS_CLEAR);
        fails('ENODEV', () => vfio(IOMMU_VFIO_IOAS_GET));
        fails('EOPNOTSUPP', () => vfio(9));
        vfio(IOMMU_VFIO_IOAS_SET, ioas);
        io.destroy(ioas);
        fails('ENODEV', () => vfio(IOMMU_VFIO_IOAS_GET));
      });
    });
  });
}

for (const target of iommufdTargets()) describeIoas(target);

describe('IOAS ioctls on SimHost only (device DMA, 1 TiB)', () => {
  function setup() {
    const io = new Iommufd(machine());
    return { io, host: io.host, ioas: io.ioasAlloc() };
  }

  it('shares memory: a device attached to the copy reaches the original pages', () => {
    const { io, host, ioas } = setup();
    const dst = io.ioasAlloc();
    const buf = anon(host, PAGE);
    io.map(ioas, buf.addr, PAGE, 0x100000n);
    call(host, io.fd, IOMMU_IOAS_COPY, iommu_ioas_copy, { dst_ioas_id: dst, src_ioas_id: ioas, length: PAGE, src_iova: 0x100000n, dst_iova: 0x700000n, flags: RW | IOMMU_IOAS_MAP_FIXED_IOVA });
    const dev = new Cdev(host, 0);
    dev.bind(io.fd);
    dev.attach(dst);
    busMaster(host, '0000:00:03.0');
    host.deviceDma('0000:00:03.0', 0x700010n, new Uint8Array([5, 6]));
    expect([...buf.bytes.subarray(0x10, 0x12)]).toEqual([5, 6]);
  });

  it('maps a 1 TiB MAP_NORESERVE region into an IOAS with a domain, and a device reaches its far end', () => {
    const { io, host, ioas } = setup();
    const dev = new Cdev(host, 2); // 0000:00:05.0, behind the 48-bit iommu1
    dev.bind(io.fd);
    dev.attach(ioas);
    const tib = anon(host, 1n << 40n);
    io.map(ioas, tib.addr, 1n << 40n, 1n << 32n);
    busMaster(host, '0000:00:05.0');
    host.deviceDma('0000:00:05.0', (1n << 32n) + (1n << 40n) - 8n, new Uint8Array([9, 9, 9, 9, 9, 9, 9, 9]));
    expect(tib.view(2 ** 40 - 8, 8)[7]).toBe(9);
    expect(io.unmap(ioas, 0n, U64_MAX)).toBe(1n << 40n);
  });
});
