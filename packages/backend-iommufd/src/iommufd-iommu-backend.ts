// The iommufd VFIO backend (QEMU's iommufd_cdev_attach/detach): devices open their cdev (or
// come as a passed fd), bind to the iommufd object, and attach to an IOAS through "auto
// domains": an existing compatible HWPT of the container, else a new one that requests dirty
// tracking when the IOMMU offers it. mdevs attach to the IOAS itself.

import {
  FirstFailure, UndoStack, VfioError, vfioClose, checkPassedDeviceFd, getDeviceInfo, getHotResetInfo, isMdev, pciHotResetIoctl,
  VFIO_IOMMU_IOMMUFD, vfioCall, vfioStep, type HostKernel, type VfioAddressSpace, type VfioContainerBase, type VfioDevice, type VfioIommuBackend,
  type VmmEventBus,
} from '@vmmkit/core';
import {
  O_CLOEXEC, O_RDWR, VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_DETACH_IOMMUFD_PT,
  VFIO_PCI_DEVID_NOT_OWNED, VFIO_PCI_DEVID_OWNED, VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED,
  vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd, vfio_device_detach_iommufd_pt,
} from '@vmmkit/core/uapi';
import { IommufdObject } from './iommufd-object.js';
import { IommufdContainer } from './iommufd-container.js';
import { IommufdHostIommuDevice } from './iommufd-host-iommu-device.js';

/** What the backend keeps per attached device. */
interface Binding {
  readonly iommufd: IommufdObject;
  readonly devid: number;
}

export class IommufdIommuBackend implements VfioIommuBackend {
  readonly kind = VFIO_IOMMU_IOMMUFD;
  readonly #bindings = new WeakMap<VfioDevice, Binding>();
  /** Attached devices by iommufd object and devid, for hot reset (QEMU's iommufd_cdev_pci_find_by_devid). */
  readonly #byDevid = new Map<IommufdObject, Map<number, VfioDevice>>();
  #nextContainer = 0;

  constructor(private readonly host: HostKernel, private readonly events: VmmEventBus) {}

  /**
   * Attach a device (iommufd_cdev_attach). A device fd passed with fd= is checked to be a VFIO
   * cdev first; it becomes the device's (closed at detach) only once the attach succeeds: a
   * failed attach leaves it open for its owner. Bound by then, it stays bound, as closing is
   * the only unbind.
   */
  async attachDevice(name: string, device: VfioDevice, space: VfioAddressSpace): Promise<VfioContainerBase> {
    const iommufd = device.iommufd;
    if (!(iommufd instanceof IommufdObject)) {
      throw new VfioError('attach through iommufd', name, { detail: 'the device names no iommufd object (iommufd=<id>)' });
    }
    if (device.fdPassed) checkPassedDeviceFd(this.host, device.fd, name);
    return vfioStep(`attach through ${this.kind}`, name, () => UndoStack.run(async (undo) => {
      device.mdev = isMdev(this.host, device.sysfsdev);
      if (!device.fdPassed) {
        device.fd = this.#openCdev(device);
        undo.push(() => {
          vfioClose(this.host, device.fd, 'the device fd', device.name);
          device.fd = -1;
        });
      }
      iommufd.connect();
      undo.push(() => iommufd.disconnect());
      const binding: Binding = { iommufd, devid: this.#bind(device, iommufd) };
      if (!device.mdev) {
        // iommufd needs a bound devid to ask the IOMMU (GET_HW_INFO); auto domains need its caps.
        device.hostIommuDevice = new IommufdHostIommuDevice(name, device, iommufd, binding.devid);
        await device.hostIommuDevice.realize();
        undo.push(() => void (device.hostIommuDevice = undefined));
      }
      let container = this.#joinExisting(device, binding, space);
      if (!container) {
        container = await this.#createContainer(binding, space, undo);
        this.#attachTo(device, binding, container);
      }
      const joined = container;
      undo.push(() => this.#leave(device, joined));
      device.info = getDeviceInfo(this.host, device.fd, name);
      container.addDevice(device);
      this.#bindings.set(device, binding);
      this.#devids(iommufd).set(binding.devid, device);
      return container;
    }));
  }

  /**
   * Detach a device: every step runs even if one fails, and the first failure is thrown after.
   * The device fd closes before the frees, so a failed DETACH cannot keep its HWPT busy.
   */
  async detachDevice(device: VfioDevice): Promise<void> {
    await vfioStep(`detach through ${this.kind}`, device.name, () => this.#detach(device));
  }

  async #detach(device: VfioDevice): Promise<void> {
    const binding = this.#bindings.get(device);
    const container = device.container;
    if (!binding || !(container instanceof IommufdContainer)) return;
    this.#bindings.delete(device);
    this.#devids(binding.iommufd).delete(binding.devid);
    const failures = new FirstFailure();
    await failures.runAsync(() => container.removeDevice(device));
    device.hostIommuDevice = undefined;
    failures.run(() => this.#detachPt(device));
    failures.run(() => vfioClose(this.host, device.fd, 'the device fd', device.name));
    device.fd = -1;
    failures.run(() => container.autodomainsPut(device));
    if (container.devices.length === 0) await failures.runAsync(() => container.close());
    binding.iommufd.disconnect();
    failures.rethrow();
  }

  /**
   * Reset the PCI bus or slot of `device` (QEMU's iommufd_cdev_pci_hot_reset): the kernel must
   * report every affected device as owned by this iommufd (DEV_ID_OWNED), and no group fds are
   * passed. `single` refuses a reset that would also reset another device of the VM.
   */
  async pciHotReset(device: VfioDevice, single: boolean): Promise<void> {
    const step = `reset the PCI bus (${single ? 'single' : 'multi'} device hot reset)`;
    const binding = this.#bindings.get(device);
    if (!binding) throw new VfioError(step, device.name, { detail: 'the device is not attached through iommufd' });
    const info = getHotResetInfo(this.host, device);
    if (!(info.flags & VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED)) {
      const strangers = info.devices.filter((d) => d.id === VFIO_PCI_DEVID_NOT_OWNED).map((d) => d.name);
      throw new VfioError(step, device.name, { errno: 'EPERM', detail: `depends on ${strangers.join(', ') || 'devices'}, which are not owned` });
    }
    let multi = false;
    for (const dep of info.devices) {
      if (dep.id === binding.devid || dep.id === VFIO_PCI_DEVID_OWNED) continue;
      if (!this.#devids(binding.iommufd).has(dep.id)) continue;
      if (single) throw new VfioError(step, device.name, { errno: 'EINVAL', detail: `it would also reset ${dep.name}, another device of this VM` });
      multi = true;
    }
    if (!single && !multi) throw new VfioError(step, device.name, { errno: 'EINVAL', detail: 'no other device of this VM shares the bus: use a single device reset' });
    pciHotResetIoctl(this.host, device, []);
  }

  #devids(iommufd: IommufdObject): Map<number, VfioDevice> {
    let map = this.#byDevid.get(iommufd);
    if (!map) this.#byDevid.set(iommufd, (map = new Map()));
    return map;
  }

  /** Open the device's cdev: /dev/vfio/devices/<name found in sysfsdev/vfio-dev> (iommufd_cdev_getfd). */
  #openCdev(device: VfioDevice): number {
    const dir = `${device.sysfsdev}/vfio-dev`;
    const entries = vfioCall(`find the VFIO cdev in ${dir} (is the device bound to vfio, and the kernel built with the VFIO cdev?)`, device.name, () =>
      this.host.readdir(dir),
    );
    const cdev = entries.find((e) => e.startsWith('vfio'));
    if (!cdev) throw new VfioError('find the VFIO cdev', device.name, { detail: `no vfio* entry in ${dir}` });
    return vfioCall(`open /dev/vfio/devices/${cdev}`, device.name, () => this.host.open(`/dev/vfio/devices/${cdev}`, O_RDWR | O_CLOEXEC));
  }

  #bind(device: VfioDevice, iommufd: IommufdObject): number {
    const arg = vfio_device_bind_iommufd.encode({ iommufd: iommufd.fd });
    vfioCall(`bind to iommufd object '${iommufd.id}'`, device.name, () => this.host.ioctl(device.fd, VFIO_DEVICE_BIND_IOMMUFD, arg));
    return vfio_device_bind_iommufd.get(arg, 'out_devid');
  }

  /** Try each container of this backend and iommufd object in the address space. */
  #joinExisting(device: VfioDevice, binding: Binding, space: VfioAddressSpace): IommufdContainer | undefined {
    for (const c of space.containersOf(this.kind)) {
      if (!(c instanceof IommufdContainer) || c.iommufd !== binding.iommufd) continue;
      try {
        this.#attachTo(device, binding, c);
        return c;
      } catch {
        // This IOAS cannot take the device (QEMU traces it and tries the next container).
      }
    }
    return undefined;
  }

  /** A new IOAS as a container, its memory mapped (devices attach to it after). */
  async #createContainer(binding: Binding, space: VfioAddressSpace, undo: UndoStack): Promise<IommufdContainer> {
    const { iommufd } = binding;
    const ioasId = iommufd.allocIoas();
    const context = { id: `iommufd-ioas-${ioasId}-${this.#nextContainer++}`, backend: this, space, host: this.host, events: this.events };
    const container = new IommufdContainer(context, iommufd, ioasId);
    // The container owns the IOAS from here: closing it frees it.
    undo.push(() => container.close());
    await container.open();
    return container;
  }

  /** mdevs attach to the IOAS itself; devices go through auto domains. */
  #attachTo(device: VfioDevice, binding: Binding, container: IommufdContainer): void {
    const attachPt = (ptId: number): void => {
      const arg = vfio_device_attach_iommufd_pt.encode({ pt_id: ptId });
      vfioCall(`attach to IOAS/HWPT ${ptId}`, device.name, () => this.host.ioctl(device.fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, arg));
    };
    if (device.mdev) {
      attachPt(container.ioasId);
      device.iommuDirtyTracking = false;
      return;
    }
    device.iommuDirtyTracking = container.autodomainsGet(device, binding.devid, attachPt);
  }

  /** Undo #attachTo: detach in the kernel, then leave the HWPT (freeing it if last). */
  #leave(device: VfioDevice, container: IommufdContainer): void {
    const failures = new FirstFailure();
    failures.run(() => this.#detachPt(device));
    failures.run(() => container.autodomainsPut(device));
    device.iommuDirtyTracking = false;
    failures.rethrow();
  }

  #detachPt(device: VfioDevice): void {
    vfioCall('detach from its IOAS/HWPT', device.name, () =>
      this.host.ioctl(device.fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, vfio_device_detach_iommufd_pt.encode()),
    );
  }
}
