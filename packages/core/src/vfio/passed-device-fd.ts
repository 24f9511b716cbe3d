// A device fd passed in with fd= (as libvirt passes an opened cdev): checked to be what it claims
// before a backend takes it, so that a wrong number never gets bound, used or closed.

import { ConfigError, errnoOf } from '../errors/vmm-error.js';
import type { HostKernel } from '../host/host-kernel.js';

const VFIO_CDEV = /^\/dev\/vfio\/devices\/vfio\d+$/;

/**
 * Check that `fd` is an open VFIO device cdev (its /proc/self/fd link names /dev/vfio/devices/vfioN).
 * @throws ConfigError naming the fd= option and what the fd is instead.
 */
export function checkPassedDeviceFd(host: HostKernel, fd: number, label: string): void {
  let target: string;
  try {
    target = host.readlink(`/proc/self/fd/${fd}`);
  } catch (e) {
    throw new ConfigError(`${label}: fd=${fd} is not an open file descriptor (${errnoOf(e) ?? String(e)})`, 'fd', String(fd));
  }
  if (!VFIO_CDEV.test(target)) {
    throw new ConfigError(`${label}: fd=${fd} is ${target}, not a VFIO device cdev (/dev/vfio/devices/vfioN)`, 'fd', String(fd));
  }
}
