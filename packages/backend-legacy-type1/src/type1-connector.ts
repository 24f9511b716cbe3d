// Joining a group to a type1 container (QEMU's vfio_connect_container / vfio_disconnect_container):
// share a container of the address space when the kernel accepts the group, else open one,
// pick the richest IOMMU type, and open the container (it reads its capabilities and maps guest
// memory).

import { HostError, VfioError, vfioCall, type HostKernel, type UndoStack, type VfioAddressSpace, type VfioIommuBackend, type VmmEventBus } from '@vmmkit/core';
import {
  O_CLOEXEC, O_RDWR, VFIO_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_GET_API_VERSION, VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU,
  VFIO_UNMAP_ALL,
} from '@vmmkit/core/uapi';
import { LegacyType1Container } from './legacy-type1-container.js';
import type { VfioGroup } from './vfio-group.js';

/** type1 v2 first: it refuses to split mappings, which is what QEMU and vmmkit expect. */
const IOMMU_TYPES = [VFIO_TYPE1v2_IOMMU, VFIO_TYPE1_IOMMU];

export class Type1Connector {
  #next = 0;

  constructor(
    private readonly backend: VfioIommuBackend,
    private readonly host: HostKernel,
    private readonly events: VmmEventBus,
    private readonly containerPath: string,
  ) {}

  /** Join `group` to a container of `space`: an existing one if the kernel lets it, else a new one. */
  async connect(group: VfioGroup, space: VfioAddressSpace, undo: UndoStack): Promise<void> {
    for (const c of space.containersOf(this.backend.kind)) {
      if (!(c instanceof LegacyType1Container)) continue;
      try {
        c.connectGroup(group);
      } catch (e) {
        // This container's IOMMU cannot take the group (a different IOMMU, say): try the next.
        if (e instanceof HostError) continue;
        throw e;
      }
      undo.push(() => this.disconnect(group));
      return;
    }
    await this.#create(group, space, undo);
  }

  /**
   * Take `group` out of its container. The last group out closes the container, which unmaps
   * before it unsets the group (unsetting the last group destroys the kernel's container) and
   * closes its fd. Every step runs; the first failure is thrown.
   */
  async disconnect(group: VfioGroup): Promise<void> {
    const container = group.container;
    if (!container) return;
    if (container.groups.length === 1) await container.close();
    else container.disconnectGroup(group);
  }

  async #create(group: VfioGroup, space: VfioAddressSpace, undo: UndoStack): Promise<void> {
    const path = this.containerPath;
    const fd = vfioCall(`open ${path}`, undefined, () => this.host.open(path, O_RDWR | O_CLOEXEC));
    const context = { id: `legacy-container-${this.#next++}`, backend: this.backend, space, host: this.host, events: this.events };
    const container = new LegacyType1Container(context, fd);
    // The container owns the fd (and every group set to it) from here: closing it releases them.
    undo.push(() => container.close());
    const version = vfioCall(`get the VFIO API version of ${path}`, undefined, () => this.host.ioctl(fd, VFIO_GET_API_VERSION));
    if (version !== VFIO_API_VERSION) {
      throw new VfioError(`use ${path}`, undefined, { detail: `supported VFIO API version ${VFIO_API_VERSION}, reported ${version}` });
    }
    const type = IOMMU_TYPES.find((t) => this.#hasExtension(fd, t));
    if (type === undefined) throw new VfioError(`set up a container on ${path}`, undefined, { detail: 'no available IOMMU models (type1 or type1v2)' });
    const unmapAll = this.#hasExtension(fd, VFIO_UNMAP_ALL);
    vfioCall(`set the container of group ${group.id}`, undefined, () => container.connectGroup(group));
    container.setIommu(type, unmapAll);
    await container.open();
  }

  /** VFIO_CHECK_EXTENSION: 1 when the container offers `extension`. A kernel that fails to answer fails the attach. */
  #hasExtension(fd: number, extension: number): boolean {
    return vfioCall(`check extension ${extension} of ${this.containerPath}`, undefined, () => this.host.ioctl(fd, VFIO_CHECK_EXTENSION, extension)) > 0;
  }
}
