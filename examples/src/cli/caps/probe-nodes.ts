// Probing the host's device nodes as a VMM would use them: open read-write, then ask the
// container and KVM for their API versions and extensions (VFIO_GET_API_VERSION,
// VFIO_CHECK_EXTENSION, KVM_GET_API_VERSION). Every fd opened here is closed again.

import { HostError, type HostKernel } from '@vmmkit/core';
import {
  KVM_API_VERSION, KVM_GET_API_VERSION, O_CLOEXEC, O_RDWR, VFIO_API_VERSION, VFIO_CHECK_EXTENSION,
  VFIO_GET_API_VERSION, VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU,
} from '@vmmkit/core/uapi';
import type { DeviceNodeCaps, KvmCaps, VfioBackendCaps, VfioBackendId } from './host-caps.js';

export const IOMMUFD_PATH = '/dev/iommu';
export const VFIO_CONTAINER_PATH = '/dev/vfio/vfio';
export const KVM_PATH = '/dev/kvm';

/** Whether `path` exists and opens read-write. */
export function probeNode(host: HostKernel, path: string): DeviceNodeCaps {
  if (!host.exists(path)) return { path, present: false, openable: false };
  try {
    host.close(host.open(path, O_RDWR | O_CLOEXEC));
    return { path, present: true, openable: true };
  } catch (e) {
    return { path, present: true, openable: false, error: describeError(e) };
  }
}

/** KVM: the node, and whether it speaks the KVM API vmmkit knows. */
export function probeKvm(host: HostKernel): KvmCaps {
  const node = probeNode(host, KVM_PATH);
  if (!node.openable) return { ...node, usable: false };
  return withFd<KvmCaps>(host, KVM_PATH, (fd) => {
    const apiVersion = host.ioctl(fd, KVM_GET_API_VERSION);
    return { ...node, apiVersion, usable: apiVersion === KVM_API_VERSION };
  }, (error) => ({ ...node, usable: false, error }));
}

/** The legacy type1 container on /dev/vfio/vfio. */
export function probeLegacyType1(host: HostKernel): VfioBackendCaps {
  return probeType1Container(host, 'legacy-type1', VFIO_CONTAINER_PATH);
}

/** iommufd itself: /dev/iommu opens. */
export function probeIommufd(host: HostKernel): VfioBackendCaps {
  const node = probeNode(host, IOMMUFD_PATH);
  return {
    id: 'iommufd',
    path: IOMMUFD_PATH,
    usable: node.openable,
    detail: node.openable ? `${IOMMUFD_PATH} opens` : missing(node),
  };
}

/** iommufd's VFIO compat container: the type1 container ioctls on an /dev/iommu fd (CONFIG_IOMMUFD_VFIO_CONTAINER). */
export function probeIommufdCompat(host: HostKernel): VfioBackendCaps {
  return probeType1Container(host, 'iommufd-vfio-compat', IOMMUFD_PATH);
}

function probeType1Container(host: HostKernel, id: VfioBackendId, path: string): VfioBackendCaps {
  const node = probeNode(host, path);
  if (!node.openable) return { id, path, usable: false, detail: missing(node) };
  return withFd<VfioBackendCaps>(host, path, (fd) => {
    const apiVersion = host.ioctl(fd, VFIO_GET_API_VERSION);
    const type1 = host.ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) > 0;
    const type1v2 = host.ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) > 0;
    const models = [type1 && 'type1', type1v2 && 'type1v2'].filter(Boolean).join(', ');
    const usable = apiVersion === VFIO_API_VERSION && (type1 || type1v2);
    const detail =
      apiVersion !== VFIO_API_VERSION ? `VFIO API version ${apiVersion}, vmmkit speaks ${VFIO_API_VERSION}`
      : models ? `VFIO API version ${apiVersion}, IOMMU models ${models}`
      : `VFIO API version ${apiVersion}, but no type1 IOMMU model (is vfio_iommu_type1 loaded?)`;
    return { id, path, usable, apiVersion, type1, type1v2, detail };
  }, (error) => ({ id, path, usable: false, detail: `${path} does not answer as a VFIO container: ${error}` }));
}

/** Run `probe` on a fresh fd of `path`, closing it whatever happens; `failed` turns an error into a result. */
function withFd<T>(host: HostKernel, path: string, probe: (fd: number) => T, failed: (error: string) => T): T {
  let fd: number;
  try {
    fd = host.open(path, O_RDWR | O_CLOEXEC);
  } catch (e) {
    return failed(describeError(e));
  }
  try {
    return probe(fd);
  } catch (e) {
    return failed(describeError(e));
  } finally {
    host.close(fd);
  }
}

function missing(node: DeviceNodeCaps): string {
  return node.present ? `${node.path} does not open: ${node.error}` : `${node.path} is absent`;
}

/** An error in a few words: a system call's errno name and ioctl where there is one. */
export function describeError(e: unknown): string {
  if (e instanceof HostError) return `${e.ioctl ?? e.syscall} -> ${e.errno}`;
  return e instanceof Error ? e.message : String(e);
}
