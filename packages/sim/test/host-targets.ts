// The hosts a host-generic test (*.host.test.ts) runs on: SimHost always, and LinuxHost where the
// kernel offers what the test needs (in the kernel tier's guest, tools/kernel-tier/), else skipped.

import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { release } from 'node:os';
import { basename } from 'node:path';
import { HostError, LinuxHost, type HostKernel } from '@vmmkit/core';
import { IOMMU_TEST_CMD, IOMMU_TEST_OP_ADD_RESERVED, iommu_test_cmd, O_CLOEXEC, O_RDWR } from '@vmmkit/core/uapi';
import { SimHost, type SimHostConfig } from '../src/index.js';

/** One host a suite runs on. */
export interface HostTarget {
  /** `SimHost` or `LinuxHost`: the kernel tier's verdict looks for `LinuxHost` in test names. */
  readonly name: 'SimHost' | 'LinuxHost';
  /** How titles name the host when the name alone is not enough (`SimHost 7.2`). */
  readonly label?: string;
  /** Why this host cannot run the suite here, if it cannot. */
  readonly unavailable?: string;
  /** A host to test on: a fresh SimHost built from `config`, or the one real kernel. */
  host(config?: SimHostConfig): HostKernel;
}

/** The suite's title on a target: the host's name, and the reason when it is skipped. */
export function onTarget(title: string, target: HostTarget): string {
  return `${title} (${target.label ?? target.name}${target.unavailable ? `; skipped: ${target.unavailable}` : ''})`;
}

/** Whether tests on this target may use SimHost's test hooks (census, fault injection, device DMA). */
export function isSim(host: HostKernel): host is SimHost {
  return host instanceof SimHost;
}

const simTarget: HostTarget = { name: 'SimHost', host: (config) => new SimHost(config ?? {}) };

/** SimHost modelling Linux 7.2, the series the kernel tier runs. */
export const sim72Target: HostTarget = { name: 'SimHost', label: 'SimHost 7.2', host: (config) => new SimHost({ ...config, kernel: '7.2' }) };

/** `targets` with SimHost in 7.2 mode beside the default SimHost, for cases whose outcome depends on the series. */
export function withSim72(targets: HostTarget[]): HostTarget[] {
  return [targets[0]!, sim72Target, ...targets.slice(1)];
}

/** The Linux series a host behaves as: SimHost's configured one, or the running kernel's ('7.2' for 7.2.12). */
export function seriesOf(host: HostKernel): string {
  if (isSim(host)) return host.kernel.linux.version;
  return release().split('.').slice(0, 2).join('.');
}

let linux: LinuxHost | undefined;
function linuxTarget(unavailable: string | undefined): HostTarget {
  return { name: 'LinuxHost', unavailable, host: () => (linux ??= new LinuxHost()) };
}

/** Why the real kernel cannot run iommufd selftest-mock cases, or undefined when it can. */
export function selftestUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'not a Linux host';
  if (!existsSync('/dev/iommu')) return '/dev/iommu is absent on this host';
  const host = (linux ??= new LinuxHost());
  let fd: number;
  try {
    fd = host.open('/dev/iommu', O_RDWR | O_CLOEXEC);
  } catch (e) {
    return `cannot open /dev/iommu (${(e as HostError).errno})`;
  }
  try {
    // Reserving a page on object 0, which never exists: ENOENT from a CONFIG_IOMMUFD_TEST kernel, ENOTTY otherwise.
    host.ioctl(fd, IOMMU_TEST_CMD, iommu_test_cmd.encode({ op: IOMMU_TEST_OP_ADD_RESERVED, id: 0, add_reserved: { start: 0n, length: 4096n } }));
    return undefined;
  } catch (e) {
    const code = (e as HostError).errno;
    return code === 'ENOTTY' ? 'the kernel has no IOMMU_TEST_CMD (CONFIG_IOMMUFD_TEST)' : code === 'ENOENT' ? undefined : `IOMMU_TEST_CMD probe failed with ${code}`;
  } finally {
    host.close(fd);
  }
}

/** SimHost, and LinuxHost when its kernel has iommufd's selftest mock. */
export function selftestTargets(): HostTarget[] {
  return [simTarget, linuxTarget(selftestUnavailable())];
}

/** Why the real kernel cannot run iommufd cases that need only /dev/iommu, or undefined when it can. */
export function iommufdUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'not a Linux host';
  if (!existsSync('/dev/iommu')) return '/dev/iommu is absent on this host';
  try {
    const host = (linux ??= new LinuxHost());
    host.close(host.open('/dev/iommu', O_RDWR | O_CLOEXEC));
    return undefined;
  } catch (e) {
    return `cannot open /dev/iommu (${(e as HostError).errno})`;
  }
}

/** SimHost, and LinuxHost when the kernel has /dev/iommu. */
export function iommufdTargets(): HostTarget[] {
  return [simTarget, linuxTarget(iommufdUnavailable())];
}

/**
 * The N of the `n`-th PCI device's cdev, /dev/vfio/devices/vfio<N>, that iommufd cases may bind:
 * on SimHost the standard machine's (0000:00:03.0 is vfio0, 0000:00:04.0 vfio1); on a real host
 * the edu devices the kernel tier names in VMMKIT_TEST_EDU_DEVICES, in that order.
 */
export function pciCdev(target: HostTarget, n = 0): { index?: number; unavailable?: string } {
  if (target.name === 'SimHost') return { index: n };
  const bdf = (process.env.VMMKIT_TEST_EDU_DEVICES ?? '').split(',')[n]?.trim();
  if (!bdf) return { unavailable: `VMMKIT_TEST_EDU_DEVICES names no device ${n + 1} bound to vfio-pci` };
  const dir = `/sys/bus/pci/devices/${bdf}/vfio-dev`;
  const name = existsSync(dir) ? readdirSync(dir).find((n) => /^vfio\d+$/.test(n)) : undefined;
  return name ? { index: Number(name.slice(4)) } : { unavailable: `${dir} has no VFIO cdev` };
}

/** Why the real kernel cannot run legacy type1 container cases, or undefined when it can. */
export function type1Unavailable(): string | undefined {
  if (process.platform !== 'linux') return 'not a Linux host';
  if (!existsSync('/dev/vfio/vfio')) return '/dev/vfio/vfio is absent on this host';
  return undefined;
}

/** SimHost, and LinuxHost when the kernel has /dev/vfio/vfio. */
export function type1Targets(): HostTarget[] {
  return [simTarget, linuxTarget(type1Unavailable())];
}

/**
 * The IOMMU group of the `n`-th PCI device, /dev/vfio/<group>: on SimHost the standard machine's
 * (group 3 for 0000:00:03.0, 4 for 0000:00:04.0); on a real host that of the n-th edu device the
 * kernel tier names in VMMKIT_TEST_EDU_DEVICES.
 */
export function pciGroup(target: HostTarget, n = 0): { group?: number; unavailable?: string } {
  if (target.name === 'SimHost') return { group: 3 + n };
  const bdf = (process.env.VMMKIT_TEST_EDU_DEVICES ?? '').split(',')[n]?.trim();
  if (!bdf) return { unavailable: `VMMKIT_TEST_EDU_DEVICES names no device ${n + 1} bound to vfio-pci` };
  const link = `/sys/bus/pci/devices/${bdf}/iommu_group`;
  return existsSync(link) ? { group: Number(basename(readlinkSync(link))) } : { unavailable: `${link} is absent` };
}

/** The UUID of the mtty mdev the kernel tier's guest creates (VMMKIT_TEST_MTTY_MDEV), or why there is none. */
export function mttyMdev(): { uuid?: string; unavailable?: string } {
  if (process.platform !== 'linux') return { unavailable: 'not a Linux host' };
  const uuid = process.env.VMMKIT_TEST_MTTY_MDEV?.trim();
  if (!uuid) return { unavailable: 'VMMKIT_TEST_MTTY_MDEV names no mtty mdev' };
  const dir = `/sys/bus/mdev/devices/${uuid}/vfio-dev`;
  if (!existsSync(dir) || readdirSync(dir).length === 0) return { unavailable: `${dir} is absent (no VFIO cdev for the mdev)` };
  if (!existsSync('/dev/iommu')) return { unavailable: '/dev/iommu is absent on this host' };
  return { uuid };
}

/** LinuxHost for a migration suite on the mtty mdev, available when the guest made one. */
export function mttyTarget(): HostTarget & { uuid?: string } {
  const mdev = mttyMdev();
  return { ...linuxTarget(mdev.unavailable), uuid: mdev.uuid };
}
