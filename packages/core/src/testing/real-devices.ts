// Which real VFIO devices a test run may use: named in VMMKIT_TEST_EDU_DEVICES (BDFs of QEMU edu
// devices bound to vfio-pci, comma separated), as the kernel test tier sets it inside its guest.

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
