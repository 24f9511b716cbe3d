// A VFIO group (QEMU's VFIOGroup): the /dev/vfio/<n> fd that owns the devices of one IOMMU
// group and joins them to a container.

import { VfioError, vfioCall, vfioClose, type HostKernel, type VfioAddressSpace, type VfioDevice } from '@vmmkit/core';
import { O_CLOEXEC, O_RDWR, VFIO_GROUP_FLAGS_VIABLE, VFIO_GROUP_GET_DEVICE_FD, VFIO_GROUP_GET_STATUS, vfio_group_status } from '@vmmkit/core/uapi';
import type { LegacyType1Container } from './legacy-type1-container.js';

export class VfioGroup {
  readonly #devices: VfioDevice[] = [];
  /** The container the group is set to; only LegacyType1Container.connectGroup/disconnectGroup change it. */
  container: LegacyType1Container | undefined;

  private constructor(
    private readonly host: HostKernel,
    readonly id: number,
    readonly fd: number,
    /** The address space the group's devices DMA in: a group lives in exactly one. */
    readonly space: VfioAddressSpace,
  ) {}

  /** Open /dev/vfio/<id> and check the group is viable. Nothing stays open on failure. */
  static open(host: HostKernel, id: number, space: VfioAddressSpace): VfioGroup {
    const path = `/dev/vfio/${id}`;
    const fd = vfioCall(`open ${path}`, undefined, () => host.open(path, O_RDWR | O_CLOEXEC));
    try {
      const status = vfio_group_status.encode();
      vfioCall(`get group ${id} status`, undefined, () => host.ioctl(fd, VFIO_GROUP_GET_STATUS, status));
      if (!(vfio_group_status.get(status, 'flags') & VFIO_GROUP_FLAGS_VIABLE)) {
        throw new VfioError(`use group ${id}`, undefined, {
          detail: 'group is not viable: ensure all devices within the iommu_group are bound to their vfio bus driver',
        });
      }
    } catch (e) {
      host.close(fd);
      throw e;
    }
    return new VfioGroup(host, id, fd, space);
  }

  /** The group's devices this VM has opened. */
  get devices(): readonly VfioDevice[] {
    return this.#devices;
  }

  /** A device of the group is opened by this VM (it must not be twice). */
  addDevice(device: VfioDevice): void {
    if (this.#devices.some((d) => d.name === device.name)) throw new VfioError('attach', device.name, { detail: 'device is already attached' });
    this.#devices.push(device);
  }

  /** The device is closed again. */
  removeDevice(device: VfioDevice): void {
    const i = this.#devices.indexOf(device);
    if (i >= 0) this.#devices.splice(i, 1);
  }

  /** VFIO_GROUP_GET_DEVICE_FD for the device called `name`. */
  getDeviceFd(name: string): number {
    const arg = new TextEncoder().encode(`${name}\0`);
    return vfioCall(`get device from group ${this.id} (are all its devices bound to vfio and not in use?)`, name, () =>
      this.host.ioctl(this.fd, VFIO_GROUP_GET_DEVICE_FD, arg),
    );
  }

  close(): void {
    vfioClose(this.host, this.fd, `group ${this.id}`);
  }
}
