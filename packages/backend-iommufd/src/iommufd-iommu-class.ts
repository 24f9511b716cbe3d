// The iommufd VFIO backend (QEMU's iommufd_cdev_attach/detach): devices open their cdev (or
// come as a passed fd), bind to the iommufd object, and attach to an IOAS through "auto
// domains": an existing compatible HWPT of the container, else a new one that requests dirty
// tracking when the IOMMU offers it. mdevs attach to the IOAS itself.

import { inject, injectable } from 'tsyringe';
import {
  FirstError, HostKernel, IOMMU_HW_CAP_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, O_CLOEXEC, O_RDWR, UndoStack,
  VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_DETACH_IOMMUFD_PT, VFIO_IOMMU_IOMMUFD, VfioError,
  VFIO_PCI_DEVID_OWNED, VFIO_PCI_DEVID_NOT_OWNED, VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED, VmmEventBus, getDeviceInfo,
  getHotResetInfo, isMdev, pciHotResetIoctl, vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd, vfio_device_detach_iommufd_pt,
  vfioCall, vfioStep, type VfioAddressSpace, type VfioContainerBase, type VfioDevice, type VfioIommuClass,
} from '@vmmkit/core';
import { IommufdBackend } from './iommufd-backend.js';
import { IommufdContainer, type IoasHwpt } from './iommufd-container.js';
import { IommufdHostIommuDevice } from './iommufd-host-iommu-device.js';

/** What the backend keeps per attached device. */
interface Binding {
  readonly backend: IommufdBackend;
  readonly devid: number;
  /** The HWPT the device is in; undefined for an mdev on the IOAS. */
  hwpt: IoasHwpt | undefined;
}

@injectable()
export class IommufdIommuClass implements VfioIommuClass {
  readonly kind = VFIO_IOMMU_IOMMUFD;
  readonly #bindings = new WeakMap<VfioDevice, Binding>();
  /** Attached devices by iommufd object and devid, for hot reset (QEMU's iommufd_cdev_pci_find_by_devid). */
  readonly #byDevid = new Map<IommufdBackend, Map<number, VfioDevice>>();
  #nextContainer = 0;

  constructor(
    @inject(HostKernel) private readonly host: HostKernel,
    @inject(VmmEventBus) private readonly events: VmmEventBus,
  ) {}

  async attachDevice(name: string, device: VfioDevice, space: VfioAddressSpace): Promise<VfioContainerBase> {
    const backend = device.iommufd;
    if (!(backend instanceof IommufdBackend)) {
      throw new VfioError('attach through iommufd', name, { detail: 'the device names no iommufd object (iommufd=<id>)' });
    }
    return vfioStep(`attach through ${this.kind}`, name, () => UndoStack.run(async (undo) => {
      device.mdev = isMdev(this.host, device.sysfsdev);
      if (device.fd < 0) device.fd = this.#openCdev(device);
      // The device fd now belongs to the backend (a passed one too, as in QEMU): closing it unbinds.
      undo.push(() => {
        this.host.close(device.fd);
        device.fd = -1;
      });
      backend.connect();
      undo.push(() => backend.disconnect());
      const binding: Binding = { backend, devid: this.#bind(device, backend), hwpt: undefined };
      if (!device.mdev) {
        // iommufd needs a bound devid to ask the IOMMU (GET_HW_INFO); auto domains need its caps.
        device.hostIommuDevice = new IommufdHostIommuDevice(name, device, backend, binding.devid);
        await device.hostIommuDevice.realize();
        undo.push(() => void (device.hostIommuDevice = undefined));
      }
      let container = await this.#joinExisting(device, binding, space);
      if (container) {
        const joined = container;
        undo.push(() => {
          this.#detachPt(device);
          this.#leaveHwpt(device, binding, joined);
        });
      } else {
        container = await this.#createContainer(device, binding, space, undo);
      }
      device.info = getDeviceInfo(this.host, device.fd, name);
      container.devices.push(device);
      device.container = container;
      container.refreshDirtySupport();
      this.#bindings.set(device, binding);
      this.#devids(backend).set(binding.devid, device);
      this.events.emit('vfio:device-attached', { device: name, container: container.id, backend: this.kind });
      return container;
    }));
  }

  /**
   * Detach a device: every step runs even if one fails, and the first failure is thrown after.
   * The device fd closes before the frees, so a failed DETACH cannot keep its HWPT busy.
   */
  async detachDevice(device: VfioDevice): Promise<void> {
    const binding = this.#bindings.get(device);
    const container = device.container as IommufdContainer | undefined;
    if (!binding || !container) return;
    this.#bindings.delete(device);
    this.#devids(binding.backend).delete(binding.devid);
    container.devices.splice(container.devices.indexOf(device), 1);
    device.container = undefined;
    device.hostIommuDevice = undefined;
    const errors = new FirstError();
    errors.run(() => this.#detachPt(device));
    errors.run(() => this.host.close(device.fd));
    device.fd = -1;
    errors.run(() => this.#leaveHwpt(device, binding, container));
    container.refreshDirtySupport();
    if (container.devices.length === 0) await errors.runAsync(() => this.#destroyContainer(container));
    binding.backend.disconnect();
    this.events.emit('vfio:device-detached', { device: device.name, container: container.id, backend: this.kind });
    errors.rethrow();
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
      if (!this.#devids(binding.backend).has(dep.id)) continue;
      if (single) throw new VfioError(step, device.name, { errno: 'EINVAL', detail: `it would also reset ${dep.name}, another device of this VM` });
      multi = true;
    }
    if (!single && !multi) throw new VfioError(step, device.name, { errno: 'EINVAL', detail: 'no other device of this VM shares the bus: use a single device reset' });
    pciHotResetIoctl(this.host, device, []);
  }

  #devids(backend: IommufdBackend): Map<number, VfioDevice> {
    let map = this.#byDevid.get(backend);
    if (!map) this.#byDevid.set(backend, (map = new Map()));
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

  #bind(device: VfioDevice, backend: IommufdBackend): number {
    const arg = vfio_device_bind_iommufd.encode({ iommufd: backend.fd });
    vfioCall(`bind to iommufd object '${backend.id}'`, device.name, () => this.host.ioctl(device.fd, VFIO_DEVICE_BIND_IOMMUFD, arg));
    return vfio_device_bind_iommufd.get(arg, 'out_devid');
  }

  /** Try each container of this backend and iommufd object in the address space. */
  async #joinExisting(device: VfioDevice, binding: Binding, space: VfioAddressSpace): Promise<IommufdContainer | undefined> {
    for (const c of space.containersOf(this.kind)) {
      const container = c as IommufdContainer;
      if (container.backend !== binding.backend) continue;
      try {
        this.#attachToContainer(device, binding, container);
        return container;
      } catch {
        // This IOAS cannot take the device (QEMU traces it and tries the next container).
      }
    }
    return undefined;
  }

  async #createContainer(device: VfioDevice, binding: Binding, space: VfioAddressSpace, undo: UndoStack): Promise<IommufdContainer> {
    const backend = binding.backend;
    const ioasId = backend.allocIoas();
    undo.push(() => backend.freeId(ioasId));
    const container = new IommufdContainer(`iommufd-ioas-${ioasId}-${this.#nextContainer++}`, this, space, this.host, this.events, backend, ioasId);
    space.containers.push(container);
    undo.push(() => void space.containers.splice(space.containers.indexOf(container), 1));
    this.#attachToContainer(device, binding, container);
    undo.push(() => {
      this.#detachPt(device);
      this.#leaveHwpt(device, binding, container);
    });
    await container.setup();
    await container.startListening();
    undo.push(() => container.stopListening());
    this.events.emit('vfio:container-created', { container: container.id, backend: this.kind });
    return container;
  }

  /** mdevs attach to the IOAS itself; devices go through auto domains. */
  #attachToContainer(device: VfioDevice, binding: Binding, container: IommufdContainer): void {
    if (device.mdev) {
      this.#attachPt(device, container.ioasId);
      device.iommuDirtyTracking = false;
      return;
    }
    this.#autodomainsGet(device, binding, container);
  }

  /** Join a compatible HWPT of the container, or allocate one (iommufd_cdev_autodomains_get). */
  #autodomainsGet(device: VfioDevice, binding: Binding, container: IommufdContainer): void {
    for (const hwpt of container.hwpts) {
      try {
        this.#attachPt(device, hwpt.id);
      } catch (e) {
        // EINVAL means the HWPT is incompatible with the device: try another, or make one.
        if (e instanceof VfioError && e.errno === 'EINVAL') continue;
        throw e;
      }
      this.#joinHwpt(device, binding, hwpt);
      return;
    }
    // Migration is not set up yet, so ask for dirty tracking whenever the IOMMU can do it;
    // migration may still prefer the device's own DMA logging later.
    const caps = device.hostIommuDevice?.hwCaps ?? 0n;
    const flags = caps & BigInt(IOMMU_HW_CAP_DIRTY_TRACKING) ? IOMMU_HWPT_ALLOC_DIRTY_TRACKING : 0;
    const id = binding.backend.allocHwpt(binding.devid, container.ioasId, flags, device.name);
    try {
      this.#attachPt(device, id);
    } catch (e) {
      binding.backend.freeId(id);
      throw e;
    }
    const hwpt: IoasHwpt = { id, flags, devices: [] };
    container.hwpts.push(hwpt);
    this.#joinHwpt(device, binding, hwpt);
    this.events.emit('vfio:hwpt-allocated', { container: container.id, hwptId: id, dirtyTracking: flags !== 0, device: device.name });
  }

  #joinHwpt(device: VfioDevice, binding: Binding, hwpt: IoasHwpt): void {
    hwpt.devices.push(device);
    binding.hwpt = hwpt;
    device.iommuDirtyTracking = (hwpt.flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) !== 0;
  }

  /** Leave the device's HWPT; the last device out frees it (iommufd_cdev_autodomains_put). */
  #leaveHwpt(device: VfioDevice, binding: Binding, container: IommufdContainer): void {
    const hwpt = binding.hwpt;
    binding.hwpt = undefined;
    device.iommuDirtyTracking = false;
    if (!hwpt) return;
    hwpt.devices.splice(hwpt.devices.indexOf(device), 1);
    if (hwpt.devices.length > 0) return;
    container.hwpts.splice(container.hwpts.indexOf(hwpt), 1);
    binding.backend.freeId(hwpt.id);
    this.events.emit('vfio:hwpt-freed', { container: container.id, hwptId: hwpt.id });
  }

  /** Unmap and free the IOAS; both are tried, the first failure is thrown. */
  async #destroyContainer(container: IommufdContainer): Promise<void> {
    const space = container.space;
    space.containers.splice(space.containers.indexOf(container), 1);
    const errors = new FirstError();
    await errors.runAsync(() => container.stopListening());
    errors.run(() => container.backend.freeId(container.ioasId));
    this.events.emit('vfio:container-destroyed', { container: container.id, backend: this.kind });
    errors.rethrow();
  }

  #attachPt(device: VfioDevice, ptId: number): void {
    const arg = vfio_device_attach_iommufd_pt.encode({ pt_id: ptId });
    vfioCall(`attach to IOAS/HWPT ${ptId}`, device.name, () => this.host.ioctl(device.fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, arg));
  }

  #detachPt(device: VfioDevice): void {
    vfioCall('detach from its IOAS/HWPT', device.name, () =>
      this.host.ioctl(device.fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, vfio_device_detach_iommufd_pt.encode()),
    );
  }
}
