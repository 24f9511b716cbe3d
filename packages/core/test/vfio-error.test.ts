// VfioError names the device, the step and the errno underneath, however deep the wrapping.

import { describe, expect, it } from 'vitest';
import { HostError, VfioError } from '../src/index.js';
import { VFIO_DEVICE_GET_INFO } from '../src/uapi/index.js';

describe('VfioError', () => {
  it('takes the errno and ioctl of the HostError underneath', () => {
    const host = new HostError({ errno: 16, syscall: 'ioctl', fd: 3, request: VFIO_DEVICE_GET_INFO, ioctl: 'VFIO_DEVICE_GET_INFO' });
    const e = new VfioError('read device info', '0000:00:03.0', { cause: host });
    expect([e.errno, e.ioctl]).toEqual(['EBUSY', 'VFIO_DEVICE_GET_INFO']);
    expect(e.message).toBe('0000:00:03.0: failed to read device info: VFIO_DEVICE_GET_INFO -> EBUSY');
  });

  it('keeps the errno of a wrapped VfioError that was told one (no system call failed)', () => {
    const inner = new VfioError('get device info over vfio-user', 'edu0', { errno: 'ENOTCONN', detail: 'the server closed the connection' });
    const outer = new VfioError('attach to vfio-user0', 'edu0', { cause: inner });
    expect(outer.errno).toBe('ENOTCONN');
    expect(new VfioError('realize', 'edu0', { cause: outer }).errno).toBe('ENOTCONN');
    expect(new VfioError('realize', 'edu0', { cause: outer, errno: 'EINVAL' }).errno).toBe('EINVAL');
  });
});
