// Which real VFIO devices a test run may use: named in VMMKIT_TEST_EDU_DEVICES (BDFs of QEMU edu
// devices bound to vfio-pci, comma separated) and VMMKIT_TEST_MTTY_MDEVS (UUIDs of mtty mdevs),
// as the kernel test tier sets them inside its guest.

import { existsSync } from 'node:fs';

/** The edu devices to test on this host, or why there are none. */
export function realEduDevices(requirement: '/dev/vfio/vfio' | '/dev/iommu'): { devices: string[]; unavailable?: string } {
  if (process.platform !== 'linux') return { devices: [], unavailable: 'not a Linux host' };
  if (!existsSync(requirement)) return { devices: [], unavailable: `${requirement} is absent on this host` };
  const names = (process.env.VMMKIT_TEST_EDU_DEVICES ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) return { devices: [], unavailable: 'VMMKIT_TEST_EDU_DEVICES names no edu devices bound to vfio-pci' };
  const devices = names.map((bdf) => `/sys/bus/pci/devices/${bdf.includes(':') && bdf.split(':').length === 3 ? bdf : `0000:${bdf}`}`);
  const missing = devices.find((d) => !existsSync(d));
  return missing ? { devices: [], unavailable: `${missing} does not exist` } : { devices };
}

/**
 * The mdevs of Linux's mtty sample to test on this host, as UUIDs: VMMKIT_TEST_MTTY_MDEVS (comma
 * separated; the kernel test tier's guest creates two), or why fewer than `count` are usable.
 */
export function realMttyMdevs(count: number): { uuids: string[]; unavailable?: string } {
  if (process.platform !== 'linux') return { uuids: [], unavailable: 'not a Linux host' };
  if (!existsSync('/dev/iommu')) return { uuids: [], unavailable: '/dev/iommu is absent on this host' };
  const uuids = (process.env.VMMKIT_TEST_MTTY_MDEVS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (uuids.length < count) return { uuids: [], unavailable: `VMMKIT_TEST_MTTY_MDEVS names ${uuids.length} mtty mdevs, ${count} are needed` };
  const missing = uuids.slice(0, count).find((u) => !existsSync(`/sys/bus/mdev/devices/${u}/vfio-dev`));
  return missing ? { uuids: [], unavailable: `/sys/bus/mdev/devices/${missing}/vfio-dev is absent (no VFIO cdev for the mdev)` } : { uuids: uuids.slice(0, count) };
}
