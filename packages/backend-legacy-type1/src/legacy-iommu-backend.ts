// The legacy VFIO backend (QEMU's vfio_legacy_attach_device and friends): devices join through
// their IOMMU group, groups share a type1 container per address space where the kernel allows.

import {
  FirstFailure, UndoStack, vfioClose, VFIO_IOMMU_LEGACY, VfioError, getDeviceInfo, getHotResetInfo, isMdev, pciHotResetIoctl, vfioCall,
  vfioStep, type HostKernel, type VfioAddressSpace, type VfioContainerBase, type VfioDevice, type VfioIommuBackend, type VmmEventBus,
} from '@vmmkit/core';
import { LegacyHostIommuDevice } from './legacy-host-iommu-device.js';
import { Type1Connector } from './type1-connector.js';
import { VfioGroup } from './vfio-group.js';

/** Options of the legacy backend. */
export interface LegacyType1Options {
  /** The container device: `/dev/vfio/vfio` (default), or `/dev/iommu` for iommufd's compat container. */
  readonly containerPath?: string;
}

export class LegacyIommuBackend implements VfioIommuBackend {
  readonly kind = VFIO_IOMMU_LEGACY;
  readonly #groups = new Map<number, VfioGroup>();
  readonly #deviceGroups = new WeakMap<VfioDevice, VfioGroup>();
  readonly #connector: Type1Connector;

  constructor(private readonly host: HostKernel, events: VmmEventBus, options: LegacyType1Options = {}) {
    this.#connector = new Type1Connector(this, host, events, options.containerPath ?? '/dev/vfio/vfio');
  }

  async attachDevice(name: string, device: VfioDevice, space: VfioAddressSpace): Promise<VfioContainerBase> {
    if (device.fdPassed) {
      throw new VfioError('use the device', name, { detail: 'a passed device fd needs the iommufd backend; the legacy backend opens devices through their group' });
    }
    return vfioStep(`attach through ${this.kind}`, name, () => UndoStack.run(async (undo) => {
      const groupId = this.#groupId(device);
      device.mdev = isMdev(this.host, device.sysfsdev);
      const group = await this.#getGroup(groupId, space, undo);
      group.addDevice(device);
      undo.push(() => group.removeDevice(device));
      device.fd = group.getDeviceFd(device.name);
      undo.push(() => {
        vfioClose(this.host, device.fd, 'the device fd', device.name);
        device.fd = -1;
      });
      device.info = getDeviceInfo(this.host, device.fd, name);
      if (!device.mdev) {
        device.hostIommuDevice = new LegacyHostIommuDevice(name, device);
        await device.hostIommuDevice.realize();
        undo.push(() => void (device.hostIommuDevice = undefined));
      }
      const container = group.container!;
      // type1's DIRTY_PAGES reports every mapped page of a vfio-pci device, which QEMU does not
      // count as IOMMU dirty tracking; vmmkit does (strategy 'iommu'), so migration can show
      // what it costs next to iommufd's exact HWPT tracking.
      device.iommuDirtyTracking = container.dirtyPgsizes !== 0n;
      container.addDevice(device);
      this.#deviceGroups.set(device, group);
      return container;
    }));
  }

  /** Detach a device; every step runs even if one fails, and the first failure is thrown after. */
  async detachDevice(device: VfioDevice): Promise<void> {
    await vfioStep(`detach through ${this.kind}`, device.name, () => this.#detach(device));
  }

  async #detach(device: VfioDevice): Promise<void> {
    const group = this.#deviceGroups.get(device);
    const container = device.container;
    if (!group || !container) return;
    this.#deviceGroups.delete(device);
    const failures = new FirstFailure();
    await failures.runAsync(() => container.removeDevice(device));
    group.removeDevice(device);
    device.hostIommuDevice = undefined;
    device.iommuDirtyTracking = false;
    failures.run(() => vfioClose(this.host, device.fd, 'the device fd', device.name));
    device.fd = -1;
    if (group.devices.length === 0) await failures.runAsync(() => this.#putGroup(group));
    failures.rethrow();
  }

  /**
   * Reset the PCI bus or slot of `device` (QEMU's vfio_legacy_pci_hot_reset): every group the
   * reset affects must be this VM's, and all their fds are passed to prove it. `single` refuses
   * a reset that would also reset another device of the VM; a multi reset needs one.
   */
  async pciHotReset(device: VfioDevice, single: boolean): Promise<void> {
    const step = `reset the PCI bus (${single ? 'single' : 'multi'} device hot reset)`;
    const info = getHotResetInfo(this.host, device);
    const groups = new Set<VfioGroup>();
    let multi = false;
    for (const dep of info.devices) {
      const group = this.#groups.get(dep.id);
      if (!group) {
        throw new VfioError(step, device.name, { errno: 'EPERM', detail: `depends on group ${dep.id} (device ${dep.name}), which is not owned` });
      }
      groups.add(group);
      if (dep.name === device.name || !group.devices.some((d) => d.name === dep.name)) continue;
      if (single) throw new VfioError(step, device.name, { errno: 'EINVAL', detail: `it would also reset ${dep.name}, another device of this VM` });
      multi = true;
    }
    if (!single && !multi) throw new VfioError(step, device.name, { errno: 'EINVAL', detail: 'no other device of this VM shares the bus: use a single device reset' });
    pciHotResetIoctl(this.host, device, [...groups].map((g) => g.fd));
  }

  /** The group number from the device's sysfs iommu_group link (vfio_device_get_groupid). */
  #groupId(device: VfioDevice): number {
    if (!device.sysfsdev) throw new VfioError('find the IOMMU group', device.name, { detail: 'no sysfs path for the device' });
    const link = vfioCall('find the IOMMU group (no such host device, or no IOMMU?)', device.name, () =>
      this.host.readlink(`${device.sysfsdev}/iommu_group`),
    );
    const id = Number(link.split('/').pop());
    if (!Number.isInteger(id) || id < 0) throw new VfioError('find the IOMMU group', device.name, { detail: `unexpected link ${link}` });
    return id;
  }

  /** The group, opened and joined to a container unless this VM has it already (vfio_get_group). */
  async #getGroup(id: number, space: VfioAddressSpace, undo: UndoStack): Promise<VfioGroup> {
    const known = this.#groups.get(id);
    if (known) {
      if (known.space !== space) throw new VfioError(`use group ${id}`, undefined, { detail: 'the group is used in another address space' });
      return known;
    }
    const group = VfioGroup.open(this.host, id, space);
    undo.push(() => group.close());
    await this.#connector.connect(group, space, undo);
    this.#groups.set(id, group);
    undo.push(() => void this.#groups.delete(id));
    return group;
  }

  /** The group's last device left: leave the container (closing it if last) and close the group. */
  async #putGroup(group: VfioGroup): Promise<void> {
    this.#groups.delete(group.id);
    const failures = new FirstFailure();
    await failures.runAsync(() => this.#connector.disconnect(group));
    failures.run(() => group.close());
    failures.rethrow();
  }
}
