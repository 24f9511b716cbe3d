// Attaching a VFIO device through the backend it asks for (QEMU's vfio_attach_device), and
// noticing mediated devices (vfio_device_is_mdev).

import type { DependencyContainer } from 'tsyringe';
import { ConfigError } from '../errors/vmm-error.js';
import type { HostKernel } from '../host/host-kernel.js';
import type { AddressSpace } from '../memory/address-space.js';
import { VfioAddressSpaces } from './vfio-address-spaces.js';
import type { VfioContainerBase } from './vfio-container-base.js';
import type { VfioDevice } from './vfio-device.js';
import { VfioIommuBackends, type VfioIommuBackend } from './vfio-iommu-backend.js';

/** The backend of `kind` registered in `container`; ConfigError listing the known ones otherwise. */
export function findVfioIommuBackend(container: DependencyContainer, kind: string): VfioIommuBackend {
  const all = container.isRegistered(VfioIommuBackends, true) ? container.resolveAll(VfioIommuBackends) : [];
  const found = all.find((c) => c.kind === kind);
  if (!found) {
    const known = all.map((c) => c.kind).join(', ') || 'none';
    throw new ConfigError(`no VFIO IOMMU backend '${kind}' is registered (registered: ${known}); add its plugin`, 'vfio-iommu', kind);
  }
  return found;
}

/** Whether the device at `sysfsdev` is a mediated device: its subsystem link ends in bus/mdev. */
export function isMdev(host: HostKernel, sysfsdev: string | undefined): boolean {
  if (!sysfsdev || !host.exists(`${sysfsdev}/subsystem`)) return false;
  return /(^|\/)bus\/mdev$/.test(host.readlink(`${sysfsdev}/subsystem`));
}

/** Attach `device` through backend `kind` in the VFIO view of `as`. */
export async function attachVfioDevice(
  container: DependencyContainer,
  kind: string,
  device: VfioDevice,
  as: AddressSpace,
): Promise<VfioContainerBase> {
  const backend = findVfioIommuBackend(container, kind);
  const spaces = container.resolve(VfioAddressSpaces);
  const space = spaces.get(as);
  try {
    return await backend.attachDevice(device.name, device, space);
  } catch (e) {
    spaces.put(space);
    throw e;
  }
}

/** Detach a device from whichever backend attached it. A device not attached is left alone. */
export async function detachVfioDevice(device: VfioDevice): Promise<void> {
  const attached = device.container;
  if (!attached) return;
  await attached.backend.detachDevice(device);
}
