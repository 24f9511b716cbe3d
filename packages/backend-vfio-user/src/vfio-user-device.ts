// A VFIO device reached over vfio-user: no fd and no sysfs path, a proxy instead. Its I/O goes
// through `io`; it is marked failed (and stays so) once its server dies, stalls or breaks the
// protocol, while the VM goes on.

import { VfioDevice, type HostKernel, type VfioError } from '@vmmkit/core';
import { VfioUserDeviceIo } from './vfio-user-device-io.js';
import type { VfioUserProxy } from './vfio-user-proxy.js';

export class VfioUserDevice extends VfioDevice {
  #failure: VfioError | undefined;

  /**
   * @param name the device's id (or socket path), in every error.
   * @param options.postedWrites whether writes callers allow to be posted go without a reply (default true).
   */
  constructor(name: string, readonly proxy: VfioUserProxy, host: HostKernel, options: { readonly postedWrites?: boolean } = {}) {
    super({}, name, () => new VfioUserDeviceIo(proxy, host, options.postedWrites ?? true));
    // As QEMU says: vfio-user devices are effectively mdevs (no host IOMMU of their own).
    this.mdev = true;
    proxy.onFailure = (error) => {
      this.#failure ??= error;
    };
  }

  override get io(): VfioUserDeviceIo {
    return super.io as VfioUserDeviceIo;
  }

  /** Why the device failed (its server died, stalled or broke the protocol); undefined while it works. */
  override get failure(): VfioError | undefined {
    return this.#failure ?? this.proxy.failure;
  }

  /** A server that serves no VFIO_DEVICE_FEATURE_MIGRATION: its device's state would be lost. */
  override get noMigrationReason(): string {
    return 'its vfio-user server does not support migration (no VFIO_DEVICE_FEATURE_MIGRATION), so its device state cannot be moved';
  }

  get failed(): boolean {
    return this.failure !== undefined;
  }
}
