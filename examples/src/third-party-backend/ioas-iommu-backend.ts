// An example third-party VFIO backend, written against @vmmkit/core only: every device of an
// address space binds to one /dev/iommu fd the backend opens itself and attaches straight to a
// shared IOAS (the simple IOMMUFD usage of DPDK-like programs: no HWPT management, no dirty
// tracking). It keeps the VfioIommuBackend contract, which examples/test runs against it; the
// container base keeps the membership, the listener and the events.

import {
  FirstFailure, HostIommuDevice, UndoStack, VfioError, getDeviceInfo, vfioCall, vfioClose, vfioStep,
  type HostIommuDeviceCaps, type HostKernel, type VfioAddressSpace, type VfioContainerBase, type VfioDevice, type VfioIommuBackend, type VmmEventBus,
} from '@vmmkit/core';
import {
  IOMMU_IOAS_ALLOC, O_CLOEXEC, O_RDWR, VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_DEVICE_BIND_IOMMUFD, iommu_ioas_alloc,
  vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd,
} from '@vmmkit/core/uapi';
import { IoasContainer } from './ioas-container.js';

export const VFIO_IOMMU_IOAS = 'vfio-iommu-ioas';

export class IoasIommuBackend implements VfioIommuBackend {
  readonly kind = VFIO_IOMMU_IOAS;
  #iommufd = -1;
  /** Live containers: the /dev/iommu fd closes with the last. */
  #containers = 0;
  #next = 0;

  constructor(private readonly host: HostKernel, private readonly events: VmmEventBus) {}

  async attachDevice(name: string, device: VfioDevice, space: VfioAddressSpace): Promise<VfioContainerBase> {
    return vfioStep(`attach through ${this.kind}`, name, () => UndoStack.run(async (undo) => {
      const existing = space.containersOf(this.kind)[0];
      const container = existing instanceof IoasContainer ? existing : await this.#createContainer(name, space, undo);
      device.fd = this.#openCdev(device);
      undo.push(() => {
        vfioClose(this.host, device.fd, 'the device fd', device.name);
        device.fd = -1;
      });
      vfioCall('bind to /dev/iommu', name, () =>
        this.host.ioctl(device.fd, VFIO_DEVICE_BIND_IOMMUFD, vfio_device_bind_iommufd.encode({ iommufd: container.iommufd })));
      vfioCall(`attach to IOAS ${container.ioasId}`, name, () =>
        this.host.ioctl(device.fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, vfio_device_attach_iommufd_pt.encode({ pt_id: container.ioasId })));
      device.info = getDeviceInfo(this.host, device.fd, name);
      // What the host IOMMU offers: this backend does not ask (no GET_HW_INFO), so no hw caps.
      device.hostIommuDevice = new PlainHostIommuDevice(name, device);
      await device.hostIommuDevice.realize();
      container.addDevice(device);
      return container;
    }));
  }

  /** Closing the device fd detaches and unbinds it; the last device takes the IOAS along. */
  async detachDevice(device: VfioDevice): Promise<void> {
    await vfioStep(`detach through ${this.kind}`, device.name, () => this.#detach(device));
  }

  async #detach(device: VfioDevice): Promise<void> {
    const container = device.container;
    if (!(container instanceof IoasContainer)) return;
    const failures = new FirstFailure();
    await failures.runAsync(() => container.removeDevice(device));
    device.hostIommuDevice = undefined;
    failures.run(() => vfioClose(this.host, device.fd, 'the device fd', device.name));
    device.fd = -1;
    if (container.devices.length === 0) await failures.runAsync(() => container.close());
    failures.rethrow();
  }

  /** A new IOAS on the backend's /dev/iommu fd (opened for the first container), mapping guest memory. */
  async #createContainer(name: string, space: VfioAddressSpace, undo: UndoStack): Promise<IoasContainer> {
    if (this.#containers === 0) this.#iommufd = vfioCall('open /dev/iommu', name, () => this.host.open('/dev/iommu', O_RDWR | O_CLOEXEC));
    this.#containers++;
    // The share of the fd is given back by the container's close once there is one.
    let container: IoasContainer | undefined;
    undo.push(() => (container ? container.close() : this.#containerReleased()));
    const arg = iommu_ioas_alloc.encode();
    vfioCall('allocate an IOAS', undefined, () => this.host.ioctl(this.#iommufd, IOMMU_IOAS_ALLOC, arg));
    const context = { id: `ioas-${this.#next++}`, backend: this, space, host: this.host, events: this.events };
    container = new IoasContainer(context, this.#iommufd, iommu_ioas_alloc.get(arg, 'out_ioas_id'), () => this.#containerReleased());
    await container.open();
    return container;
  }

  #containerReleased(): void {
    if (--this.#containers > 0) return;
    const fd = this.#iommufd;
    this.#iommufd = -1;
    vfioClose(this.host, fd, '/dev/iommu');
  }

  /** The device's cdev, /dev/vfio/devices/vfioN, found through sysfs. */
  #openCdev(device: VfioDevice): number {
    if (!device.sysfsdev) throw new VfioError('open the VFIO cdev', device.name, { detail: 'this backend needs sysfsdev= or host=' });
    const cdev = vfioCall('find the VFIO cdev', device.name, () => this.host.readdir(`${device.sysfsdev}/vfio-dev`)).find((e) => e.startsWith('vfio'));
    if (!cdev) throw new VfioError('find the VFIO cdev', device.name, { detail: `no vfio* entry in ${device.sysfsdev}/vfio-dev` });
    return vfioCall(`open /dev/vfio/devices/${cdev}`, device.name, () => this.host.open(`/dev/vfio/devices/${cdev}`, O_RDWR | O_CLOEXEC));
  }
}

/** The host IOMMU as this backend knows it: only its address width, from the IOAS's IOVA ranges. */
class PlainHostIommuDevice extends HostIommuDevice {
  protected async probe(): Promise<HostIommuDeviceCaps> {
    return { hwCaps: 0n };
  }
}
