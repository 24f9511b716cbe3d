// An example third-party VFIO backend, written against @vmmkit/core only: every device of an
// address space binds to one /dev/iommu fd the backend opens itself and attaches straight to a
// shared IOAS (the simple IOMMUFD usage of DPDK-like programs: no HWPT management, no dirty
// tracking). It keeps the VfioIommuClass contract, which examples/test runs against it.

import {
  FirstError, HostIommuDevice, IOMMU_DESTROY, IOMMU_IOAS_ALLOC, O_CLOEXEC, O_RDWR, UndoStack, VFIO_DEVICE_ATTACH_IOMMUFD_PT,
  VFIO_DEVICE_BIND_IOMMUFD, VfioError, getDeviceInfo, iommu_destroy, iommu_ioas_alloc, vfio_device_attach_iommufd_pt,
  vfio_device_bind_iommufd, vfioCall, vfioStep,
  type HostIommuDeviceCaps, type HostKernel, type VfioAddressSpace, type VfioContainerBase, type VfioDevice, type VfioIommuClass, type VmmEventBus,
} from '@vmmkit/core';
import { IoasContainer } from './ioas-container.js';

export const VFIO_IOMMU_IOAS = 'vfio-iommu-ioas';

export class IoasIommuClass implements VfioIommuClass {
  readonly kind = VFIO_IOMMU_IOAS;
  #iommufd = -1;
  #next = 0;

  constructor(private readonly host: HostKernel, private readonly events: VmmEventBus) {}

  async attachDevice(name: string, device: VfioDevice, space: VfioAddressSpace): Promise<VfioContainerBase> {
    return vfioStep(`attach through ${this.kind}`, name, () => UndoStack.run(async (undo) => {
      if (this.#iommufd < 0) {
        this.#iommufd = vfioCall('open /dev/iommu', name, () => this.host.open('/dev/iommu', O_RDWR | O_CLOEXEC));
        undo.push(() => this.#closeIommufdIfUnused(space));
      }
      device.fd = this.#openCdev(device);
      undo.push(() => {
        this.host.close(device.fd);
        device.fd = -1;
      });
      vfioCall('bind to /dev/iommu', name, () =>
        this.host.ioctl(device.fd, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd.encode({ iommufd: this.#iommufd })));
      const existing = space.containersOf(this.kind)[0] as IoasContainer | undefined;
      const container = existing ?? (await this.#createContainer(space, undo));
      vfioCall(`attach to IOAS ${container.ioasId}`, name, () =>
        this.host.ioctl(device.fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, vfio_device_attach_iommufd_pt.encode({ pt_id: container.ioasId })));
      device.info = getDeviceInfo(this.host, device.fd, name);
      // What the host IOMMU offers: this backend does not ask (no GET_HW_INFO), so no hw caps.
      device.hostIommuDevice = new PlainHostIommuDevice(name, device);
      await device.hostIommuDevice.realize();
      container.devices.push(device);
      device.container = container;
      this.events.emit('vfio:device-attached', { device: name, container: container.id, backend: this.kind });
      return container;
    }));
  }

  /** Closing the device fd detaches and unbinds it; the last device takes the IOAS along. */
  async detachDevice(device: VfioDevice): Promise<void> {
    const container = device.container as IoasContainer | undefined;
    if (!container) return;
    container.devices.splice(container.devices.indexOf(device), 1);
    device.container = undefined;
    device.hostIommuDevice = undefined;
    const errors = new FirstError();
    errors.run(() => vfioCall('close the device', device.name, () => this.host.close(device.fd)));
    device.fd = -1;
    if (container.devices.length === 0) {
      await errors.runAsync(() => container.stopListening());
      errors.run(() => vfioCall(`free IOAS ${container.ioasId}`, device.name, () =>
        this.host.ioctl(this.#iommufd, IOMMU_DESTROY, iommu_destroy.encode({ id: container.ioasId }))));
      container.space.containers.splice(container.space.containers.indexOf(container), 1);
      this.events.emit('vfio:container-destroyed', { container: container.id, backend: this.kind });
      this.#closeIommufdIfUnused(container.space);
    }
    this.events.emit('vfio:device-detached', { device: device.name, container: container.id, backend: this.kind });
    errors.rethrow();
  }

  async #createContainer(space: VfioAddressSpace, undo: UndoStack): Promise<IoasContainer> {
    const arg = iommu_ioas_alloc.encode();
    vfioCall('allocate an IOAS', undefined, () => this.host.ioctl(this.#iommufd, IOMMU_IOAS_ALLOC, arg));
    const ioasId = iommu_ioas_alloc.get(arg, 'out_ioas_id');
    undo.push(() => void this.host.ioctl(this.#iommufd, IOMMU_DESTROY, iommu_destroy.encode({ id: ioasId })));
    const container = new IoasContainer(`ioas-${this.#next++}`, this, space, this.host, this.events, this.#iommufd, ioasId);
    space.containers.push(container);
    undo.push(() => void space.containers.splice(space.containers.indexOf(container), 1));
    // Map guest RAM now and follow it from here on.
    await container.startListening();
    undo.push(() => container.stopListening());
    this.events.emit('vfio:container-created', { container: container.id, backend: this.kind });
    return container;
  }

  /** The device's cdev, /dev/vfio/devices/vfioN, found through sysfs. */
  #openCdev(device: VfioDevice): number {
    if (!device.sysfsdev) throw new VfioError('open the VFIO cdev', device.name, { detail: 'this backend needs sysfsdev= or host=' });
    const cdev = vfioCall('find the VFIO cdev', device.name, () => this.host.readdir(`${device.sysfsdev}/vfio-dev`)).find((e) => e.startsWith('vfio'));
    if (!cdev) throw new VfioError('find the VFIO cdev', device.name, { detail: `no vfio* entry in ${device.sysfsdev}/vfio-dev` });
    return vfioCall(`open /dev/vfio/devices/${cdev}`, device.name, () => this.host.open(`/dev/vfio/devices/${cdev}`, O_RDWR | O_CLOEXEC));
  }

  #closeIommufdIfUnused(space: VfioAddressSpace): void {
    if (this.#iommufd < 0 || space.containersOf(this.kind).length > 0) return;
    this.host.close(this.#iommufd);
    this.#iommufd = -1;
  }
}

/** The host IOMMU as this backend knows it: only its address width, from the IOAS's IOVA ranges. */
class PlainHostIommuDevice extends HostIommuDevice {
  protected async probe(): Promise<HostIommuDeviceCaps> {
    return { hwCaps: 0n };
  }
}
