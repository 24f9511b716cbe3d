// The VFIO side of one VM (QEMU's vfio_attach_device / vfio_detach_device and its list of VFIO
// address spaces): the backends its plugins registered, the address spaces with containers,
// and the attach and detach of devices through the backend each asks for.

import { ConfigError } from '../errors/vmm-error.js';
import type { HostKernel } from '../host/host-kernel.js';
import type { AddressSpace } from '../memory/address-space.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { VfioAddressSpaces } from './vfio-address-spaces.js';
import type { VfioContainerBase } from './vfio-container-base.js';
import type { VfioDevice } from './vfio-device.js';
import type { VfioIommuBackend } from './vfio-iommu-backend.js';

export class VmVfio {
  /** The VFIO view of each address space that has containers. */
  readonly spaces: VfioAddressSpaces;

  /**
   * @param backends the backends the VM's plugins registered (read when a device attaches, so
   *   that the plugins' order of registration does not matter).
   */
  constructor(memory: GuestMemory, private readonly backends: () => readonly VfioIommuBackend[]) {
    this.spaces = new VfioAddressSpaces(memory);
  }

  /** Every VFIO container of the VM, by address space, oldest first. */
  get containers(): VfioContainerBase[] {
    return this.spaces.all().flatMap((s) => s.containers);
  }

  /**
   * The backend of `kind`.
   * @throws ConfigError listing the registered kinds when none is `kind`.
   */
  backend(kind: string): VfioIommuBackend {
    const all = this.backends();
    const found = all.find((c) => c.kind === kind);
    if (found) return found;
    const known = all.map((c) => c.kind).join(', ') || 'none';
    throw new ConfigError(`no VFIO IOMMU backend '${kind}' is registered (registered: ${known}); add its plugin`, 'vfio-iommu', kind);
  }

  /**
   * Attach `device` through backend `kind` in the VFIO view of `as` (vfio_attach_device).
   * @throws ConfigError for an unknown backend; the backend's VfioError when it cannot attach.
   */
  async attach(device: VfioDevice, kind: string, as: AddressSpace): Promise<VfioContainerBase> {
    const backend = this.backend(kind);
    const space = this.spaces.get(as);
    try {
      return await backend.attachDevice(device.name, device, space);
    } catch (e) {
      this.spaces.put(space);
      throw e;
    }
  }

  /** Detach a device from whichever backend attached it. A device not attached is left alone. */
  async detach(device: VfioDevice): Promise<void> {
    await device.container?.backend.detachDevice(device);
  }
}

/** Whether the device at `sysfsdev` is a mediated device: its subsystem link ends in bus/mdev. */
export function isMdev(host: HostKernel, sysfsdev: string | undefined): boolean {
  if (!sysfsdev || !host.exists(`${sysfsdev}/subsystem`)) return false;
  return /(^|\/)bus\/mdev$/.test(host.readlink(`${sysfsdev}/subsystem`));
}
