import { constants } from 'node:os';
import { describe, expect, it } from 'vitest';
import { ERRNO, errnoMessage, errnoName, errnoNumber } from '../src/host/errno.js';
import { HostError } from '../src/host/host-error.js';

describe('errno table', () => {
  it('agrees with the platform where the platform is Linux', () => {
    if (process.platform !== 'linux') return;
    const platform = constants.errno as Record<string, number>;
    for (const [name, value] of Object.entries(ERRNO)) {
      if (name in platform) expect(platform[name], name).toBe(value);
    }
    expect(Object.keys(ERRNO).length).toBeGreaterThan(120);
  });

  it('names, numbers and describes errnos', () => {
    expect(errnoName(22)).toBe('EINVAL');
    expect(errnoNumber('ENOTTY')).toBe(25);
    expect(errnoMessage(95)).toBe('Operation not supported');
    expect(errnoName(4242)).toBe('E4242');
    expect(() => errnoNumber('EWHAT')).toThrow(/unknown errno name 'EWHAT'/);
  });
});

describe('HostError', () => {
  it('names the call, its fd and ioctl, and the errno', () => {
    const e = new HostError({ errno: 16, syscall: 'ioctl', fd: 7, request: 0x3b68, ioctl: 'VFIO_GROUP_SET_CONTAINER' });
    expect(e.message).toBe('ioctl(fd 7, VFIO_GROUP_SET_CONTAINER) failed: EBUSY (Device or resource busy)');
    expect(e).toMatchObject({ errnoNumber: 16, errno: 'EBUSY', syscall: 'ioctl', ioctl: 'VFIO_GROUP_SET_CONTAINER' });
    expect(HostError.is(e, 'EBUSY')).toBe(true);
    expect(HostError.is(e, 'EINVAL')).toBe(false);
  });

  it('shows an unnamed request in hex and a path in quotes', () => {
    expect(new HostError({ errno: 25, syscall: 'ioctl', fd: 3, request: 0x1234 }).message).toBe(
      'ioctl(fd 3, request 0x1234) failed: ENOTTY (Inappropriate ioctl for device)',
    );
    expect(new HostError({ errno: 2, syscall: 'open', path: '/dev/iommu' }).message).toBe(
      "open('/dev/iommu') failed: ENOENT (No such file or directory)",
    );
  });
});
