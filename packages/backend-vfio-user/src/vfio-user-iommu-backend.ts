// The vfio-user backend (QEMU's TYPE_VFIO_IOMMU_USER): every device gets a container of its own
// whose DMA mappings are messages to the device's server (hw/vfio-user/container.c).

import {
  FirstFailure, VfioError, type HostKernel, type VfioAddressSpace, type VfioContainerBase, type VfioDevice,
  type VfioIommuBackend, type VmmEventBus,
} from '@vmmkit/core';
import { VfioUserContainer } from './vfio-user-container.js';
import { VfioUserDevice } from './vfio-user-device.js';

/** The kind devices name to use this backend. */
export const VFIO_IOMMU_USER = 'vfio-iommu-user';

export class VfioUserIommuBackend implements VfioIommuBackend {
  readonly kind = VFIO_IOMMU_USER;
  #nextId = 1;

  constructor(private readonly host: HostKernel, private readonly events: VmmEventBus) {}

  /**
   * Negotiate the version (if not yet), open a container for the device (its DMA_MAPs of the
   * address space's RAM go out now, as QEMU sends them before DEVICE_GET_INFO), read the device
   * info and make the device a member. On failure the container is closed again.
   */
  async attachDevice(name: string, device: VfioDevice, space: VfioAddressSpace): Promise<VfioContainerBase> {
    if (!(device instanceof VfioUserDevice)) {
      throw new VfioError('attach to a vfio-user container', name, { detail: 'the device has no vfio-user connection', errno: 'EINVAL' });
    }
    if (device.container) throw new VfioError('attach to a vfio-user container', name, { detail: `already in ${device.container.id}`, errno: 'EBUSY' });
    if (!device.proxy.connected) await device.proxy.connect();
    const container = new VfioUserContainer(
      { id: `vfio-user-container-${this.#nextId++}`, backend: this, space, host: this.host, events: this.events },
      device.proxy,
    );
    try {
      // The server's DMA_READ / DMA_WRITE reach guest RAM at the address they name (no guest IOMMU here).
      const memory = space.memory;
      device.proxy.dmaTarget = {
        busMaster: () => device.io.busMaster,
        read: (address, count) => memory.read(address, count),
        write: (address, data) => memory.write(address, data),
      };
      await container.open();
      device.info = await device.io.deviceInfo();
      container.addDevice(device);
    } catch (e) {
      device.info = undefined;
      device.proxy.dmaTarget = undefined;
      const failures = new FirstFailure();
      await failures.runAsync(() => container.close());
      // The errno the failed step reported (a server's reply, ENOTCONN, ETIMEDOUT) comes along with the cause.
      throw new VfioError(`attach to ${container.id}`, name, { cause: e });
    }
    return container;
  }

  /** Leave the container and close it; every step runs, the first failure is thrown after. */
  async detachDevice(device: VfioDevice): Promise<void> {
    const container = device.container;
    if (!container) return;
    const failures = new FirstFailure();
    await failures.runAsync(() => container.removeDevice(device));
    await failures.runAsync(() => container.close());
    if (device instanceof VfioUserDevice) {
      device.proxy.dmaTarget = undefined;
      device.io.closeRegionFiles();
    }
    failures.rethrow();
  }
}
