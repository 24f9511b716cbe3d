// LinuxHost against the real kernel of this machine: /dev/kvm, /dev/null, memory, eventfds, sysfs.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HostError, LinuxHost } from '../src/index.js';
import {
  EFD_CLOEXEC, EFD_NONBLOCK, KVM_API_VERSION, KVM_CAP_USER_MEMORY, KVM_CHECK_EXTENSION, KVM_GET_API_VERSION, MAP_ANONYMOUS,
  MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, O_CLOEXEC, O_RDONLY, O_RDWR, PROT_READ, PROT_WRITE, VFIO_GET_API_VERSION,
  VFIO_GROUP_GET_DEVICE_FD,
} from '../src/uapi/index.js';
import { ArgumentError } from '../src/errors/vmm-error-base.js';

const onLinux = process.platform === 'linux';
const host = onLinux ? new LinuxHost() : undefined!;
const hasKvm = onLinux && host.exists('/dev/kvm');
const scratch = mkdtempSync(join(tmpdir(), 'vmmkit-linuxhost-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const u64le = (v: bigint): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
};

describe.skipIf(!hasKvm)(`LinuxHost on /dev/kvm${hasKvm ? '' : ' (skipped: /dev/kvm is absent on this host)'}`, () => {
  it('answers KVM_GET_API_VERSION with 12 and KVM_CHECK_EXTENSION with an integer argument', () => {
    const kvm = host.open('/dev/kvm', O_RDWR | O_CLOEXEC);
    try {
      expect(host.ioctl(kvm, KVM_GET_API_VERSION)).toBe(KVM_API_VERSION);
      expect(host.ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY)).toBe(1);
      expect(host.ioctl(kvm, KVM_CHECK_EXTENSION, BigInt(KVM_CAP_USER_MEMORY))).toBe(1);
    } finally {
      host.close(kvm);
    }
  });

  it('leaves a request unnamed on an fd whose kind has no such ioctl (kvm answers EINVAL, not ENOTTY)', () => {
    const kvm = host.open('/dev/kvm', O_RDWR | O_CLOEXEC);
    try {
      expect(() => host.ioctl(kvm, VFIO_GET_API_VERSION)).toThrow(
        expect.objectContaining({ errno: 'EINVAL', ioctl: undefined, request: VFIO_GET_API_VERSION }),
      );
    } finally {
      host.close(kvm);
    }
  });
});

describe.skipIf(!onLinux)('LinuxHost on this kernel', () => {
  it('gives ENOTTY for an unknown ioctl on /dev/null, naming the call, fd and request', () => {
    const fd = host.open('/dev/null', O_RDWR | O_CLOEXEC);
    try {
      let err: unknown;
      try { host.ioctl(fd, 0x1234); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(HostError);
      expect(err).toMatchObject({ errnoNumber: 25, errno: 'ENOTTY', syscall: 'ioctl', fd, request: 0x1234 });
      expect((err as Error).message).toBe(`ioctl(fd ${fd}, request 0x1234) failed: ENOTTY (Inappropriate ioctl for device)`);
      // A known request is named even when the fd's kind is not.
      expect(() => host.ioctl(fd, VFIO_GROUP_GET_DEVICE_FD, new Uint8Array(8))).toThrow(
        `ioctl(fd ${fd}, VFIO_GROUP_GET_DEVICE_FD) failed: ENOTTY`,
      );
    } finally {
      host.close(fd);
    }
  });

  it('gives ENOENT for a bad path, naming the path', () => {
    expect(() => host.open('/dev/vfio/no-such-group', O_RDWR)).toThrow(
      "open('/dev/vfio/no-such-group') failed: ENOENT (No such file or directory)",
    );
  });

  it('gives EBADF for a bad fd on every fd call, naming the fd', () => {
    const bad = 1_000_000;
    expect(() => host.close(bad)).toThrow(`close(fd ${bad}) failed: EBADF (Bad file descriptor)`);
    expect(() => host.ioctl(bad, VFIO_GET_API_VERSION)).toThrow(`ioctl(fd ${bad}, VFIO_GET_API_VERSION) failed: EBADF`);
    expect(() => host.read(bad, new Uint8Array(8))).toThrow(`read(fd ${bad}) failed: EBADF`);
    expect(() => host.write(bad, new Uint8Array(8))).toThrow(`write(fd ${bad}) failed: EBADF`);
    expect(() => host.pread(bad, new Uint8Array(8), 0n)).toThrow(`pread(fd ${bad}) failed: EBADF`);
    expect(() => host.mmap(4096, PROT_READ, MAP_SHARED, bad, 0n)).toThrow(`mmap(fd ${bad}) failed: EBADF`);
  });

  it('reads back through the kernel what JS wrote into an anonymous mapping', () => {
    const m = host.mmap(8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
    const path = join(scratch, 'anon');
    writeFileSync(path, '');
    const fd = host.open(path, O_RDWR | O_CLOEXEC);
    try {
      expect(m.addr % 4096n).toBe(0n);
      m.bytes.set(new TextEncoder().encode('hello from JS'), 4090); // crosses a page boundary
      // write(2) reads the bytes at the mapping's address in the kernel.
      expect(host.write(fd, m.view(4090, 13))).toBe(13);
      expect(readFileSync(path, 'utf8')).toBe('hello from JS');
      // pread(2) writes into the mapping in place.
      expect(host.pread(fd, m.view(0, 5), 6n)).toBe(5);
      expect(new TextDecoder().decode(m.bytes.subarray(0, 5))).toBe('from ');
    } finally {
      host.close(fd);
      m.unmap();
    }
  });

  it('maps a file shared, so stores through the mapping reach the file', () => {
    const path = join(scratch, 'shared');
    writeFileSync(path, Buffer.alloc(4096));
    const fd = host.open(path, O_RDWR | O_CLOEXEC);
    const m = host.mmap(4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0n);
    try {
      m.bytes.set([0xde, 0xad, 0xbe, 0xef], 100);
      expect(readFileSync(path).subarray(100, 104)).toEqual(Buffer.from([0xde, 0xad, 0xbe, 0xef]));
      expect(host.pwrite(fd, new Uint8Array([1, 2]), 200n)).toBe(2);
      expect([...m.bytes.subarray(200, 202)]).toEqual([1, 2]);
    } finally {
      m.unmap();
      host.close(fd);
    }
  });

  it('refuses a whole-mapping view beyond 4 GiB but offers windows, and guards use after unmap', () => {
    const length = 2 ** 33;
    const m = host.mmap(length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0n);
    try {
      expect(() => m.bytes).toThrow(/4 GiB typed-array limit/);
      const w = m.view(2 ** 32 + 4096, 4096);
      w[7] = 42;
      expect(m.view(2 ** 32 + 4096, 8)[7]).toBe(42);
      expect(() => m.view(length - 8, 16)).toThrow(ArgumentError);
    } finally {
      m.unmap();
    }
    m.unmap(); // a second unmap does nothing
    expect(() => m.view(0, 8)).toThrow(/was unmapped/);
  });

  it('counts with an eventfd and reports EAGAIN when a non-blocking one is empty', () => {
    const efd = host.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    try {
      expect(host.write(efd, u64le(5n))).toBe(8);
      expect(host.write(efd, u64le(2n))).toBe(8);
      const out = new Uint8Array(8);
      expect(host.read(efd, out)).toBe(8);
      expect(new DataView(out.buffer).getBigUint64(0, true)).toBe(7n);
      expect(() => host.read(efd, out)).toThrow(expect.objectContaining({ errno: 'EAGAIN', syscall: 'read', fd: efd }));
    } finally {
      host.close(efd);
    }
  });

  it('reports an eventfd becoming readable from the event loop until the watch stops', async () => {
    const efd = host.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    const seen: bigint[] = [];
    const out = new Uint8Array(8);
    const stop = host.watch(efd, () => {
      host.read(efd, out);
      seen.push(new DataView(out.buffer).getBigUint64(0, true));
    });
    try {
      host.write(efd, u64le(3n));
      await new Promise((resolve) => setTimeout(resolve, 20));
      host.write(efd, u64le(4n));
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(seen).toEqual([3n, 4n]);
    } finally {
      stop();
      host.close(efd);
    }
  });

  it('reads links and directories, and turns their errors into HostErrors', () => {
    const fd = host.open('/proc/self/stat', O_RDONLY | O_CLOEXEC);
    try {
      expect(host.readdir('/proc/self/fd')).toContain(String(fd));
      expect(host.readlink(`/proc/self/fd/${fd}`)).toBe(`/proc/${process.pid}/stat`);
    } finally {
      host.close(fd);
    }
    expect(host.exists('/proc/self')).toBe(true);
    expect(host.exists('/sys/bus/pci/devices/0000:ff:1f.7')).toBe(false);
    expect(() => host.readlink('/sys/bus/pci/devices/0000:ff:1f.7/iommu_group')).toThrow(
      "readlink('/sys/bus/pci/devices/0000:ff:1f.7/iommu_group') failed: ENOENT",
    );
    expect(() => host.readdir('/proc/self/stat')).toThrow(expect.objectContaining({ errno: 'ENOTDIR', syscall: 'readdir' }));
  });

  it('reports the absence of VFIO and iommufd with the path when they are missing', () => {
    for (const path of ['/dev/iommu', '/dev/vfio/vfio']) {
      if (host.exists(path)) continue;
      expect(() => host.open(path, O_RDWR)).toThrow(`open('${path}') failed: ENOENT`);
    }
  });
});
