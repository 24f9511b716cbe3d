// A /dev/iommu fd passed in with `-object iommufd,fd=N` (as libvirt passes one it opened): checked
// to be what it claims when the object is created, so that a wrong number is refused by name there
// rather than failing the first device's ioctl with ENOTTY.

import { ConfigError, errnoOf, type HostKernel } from '@vmmkit/core';

/**
 * Check that `fd` is an open /dev/iommu (its /proc/self/fd link names it).
 * @throws ConfigError naming the object, the fd= option and what the fd is instead.
 */
export function checkPassedIommuFd(host: HostKernel, fd: number, id: string): void {
  let target: string;
  try {
    target = host.readlink(`/proc/self/fd/${fd}`);
  } catch (e) {
    throw new ConfigError(`iommufd object '${id}': fd=${fd} is not an open file descriptor (${errnoOf(e) ?? String(e)})`, 'fd', String(fd));
  }
  if (target !== '/dev/iommu') throw new ConfigError(`iommufd object '${id}': fd=${fd} is ${target}, not /dev/iommu`, 'fd', String(fd));
}
