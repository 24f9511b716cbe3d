// Finding the host's VFIO devices through sysfs, as a person would: PCI functions whose driver is
// vfio-pci (listed under /sys/bus/pci/drivers/vfio-pci, and each function's `driver` link), each
// with its IOMMU group and its device cdev, plus any cdev under /dev/vfio/devices no PCI function
// claims (an mdev, say).

import type { HostKernel } from '@vmmkit/core';

const PCI_DEVICES = '/sys/bus/pci/devices';
const VFIO_PCI_DRIVER = '/sys/bus/pci/drivers/vfio-pci';
const CDEV_DIR = '/dev/vfio/devices';
const BDF = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

/** A VFIO device as sysfs shows it. */
export interface VfioDeviceEntry {
  /** The PCI address; absent for a cdev no PCI function claims. */
  readonly bdf?: string;
  /** The cdev's name under /dev/vfio/devices (`vfio3`), when the kernel has cdevs. */
  readonly cdev?: string;
  readonly iommuGroup?: number;
}

/** Every VFIO device of the host: PCI functions bound to vfio-pci first (by address), then lone cdevs. */
export function findVfioDevices(host: HostKernel): VfioDeviceEntry[] {
  const bdfs = new Set(list(host, VFIO_PCI_DRIVER).filter((n) => BDF.test(n)));
  // Linux lists bound functions in the driver's directory; checking each function's driver link
  // as well finds them where that directory is not populated.
  for (const bdf of list(host, PCI_DEVICES)) {
    if (lastPart(link(host, `${PCI_DEVICES}/${bdf}/driver`)) === 'vfio-pci') bdfs.add(bdf);
  }
  const pci = [...bdfs].sort().map((bdf): VfioDeviceEntry => {
    const group = lastPart(link(host, `${PCI_DEVICES}/${bdf}/iommu_group`));
    const cdev = list(host, `${PCI_DEVICES}/${bdf}/vfio-dev`).find((n) => /^vfio\d+$/.test(n));
    return { bdf, ...(cdev && { cdev }), ...(group !== undefined && /^\d+$/.test(group) && { iommuGroup: Number(group) }) };
  });
  const claimed = new Set(pci.map((d) => d.cdev));
  const lone = list(host, CDEV_DIR).filter((n) => /^vfio\d+$/.test(n) && !claimed.has(n)).sort(byNumber);
  return [...pci, ...lone.map((cdev) => ({ cdev }))];
}

/** The directory's entries; none when it is absent or unreadable (no vfio-pci module, no cdevs). */
function list(host: HostKernel, path: string): string[] {
  try {
    return host.readdir(path);
  } catch {
    return [];
  }
}

function link(host: HostKernel, path: string): string | undefined {
  try {
    return host.readlink(path);
  } catch {
    return undefined;
  }
}

function lastPart(path: string | undefined): string | undefined {
  return path?.replace(/\/+$/, '').split('/').pop();
}

function byNumber(a: string, b: string): number {
  return Number(a.slice(4)) - Number(b.slice(4));
}
