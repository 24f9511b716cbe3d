// Names of ioctl requests for error messages, by the kind of fd they are issued on.

import type { FdKind } from './ioctl.js';
import { IOMMUFD_IOCTLS } from './iommufd.js';
import { IOMMUFD_TEST_IOCTLS } from './iommufd-test.js';
import { KVM_SYSTEM_IOCTLS, KVM_VCPU_IOCTLS, KVM_VM_IOCTLS } from './kvm.js';
import { VFIO_CONTAINER_IOCTLS, VFIO_DEVICE_IOCTLS, VFIO_GROUP_IOCTLS, VFIO_MIG_DATA_IOCTLS } from './vfio.js';

const reverse = (...tables: Record<string, number>[]): ReadonlyMap<number, string> =>
  new Map(tables.flatMap((t) => Object.entries(t).map(([name, request]) => [request, name] as const)));

// iommufd's /dev/iommu also serves the VFIO container ioctls (its type1 compat container) and,
// on CONFIG_IOMMUFD_TEST kernels, IOMMU_TEST_CMD.
const BY_KIND: Readonly<Record<FdKind, ReadonlyMap<number, string>>> = {
  'vfio-container': reverse(VFIO_CONTAINER_IOCTLS),
  'vfio-group': reverse(VFIO_GROUP_IOCTLS),
  'vfio-device': reverse(VFIO_DEVICE_IOCTLS),
  'vfio-mig-data': reverse(VFIO_MIG_DATA_IOCTLS),
  iommufd: reverse(IOMMUFD_IOCTLS, IOMMUFD_TEST_IOCTLS, VFIO_CONTAINER_IOCTLS),
  // KVM's system, VM and vCPU ioctls have distinct numbers: one table names them all.
  kvm: reverse(KVM_SYSTEM_IOCTLS, KVM_VM_IOCTLS, KVM_VCPU_IOCTLS),
};

/**
 * The name of an ioctl request: exact when the fd's kind is known; otherwise every name the
 * number has across kinds, joined with `|` (VFIO reuses numbers between container and device).
 * Undefined for a number no table knows.
 */
export function ioctlName(request: number, kind?: FdKind): string | undefined {
  if (kind) return BY_KIND[kind].get(request);
  const names = new Set<string>();
  for (const table of Object.values(BY_KIND)) {
    const name = table.get(request);
    if (name) names.add(name);
  }
  return names.size ? [...names].join('|') : undefined;
}
