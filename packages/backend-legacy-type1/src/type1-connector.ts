// Joining a group to a type1 container (QEMU's vfio_connect_container / vfio_disconnect_container):
// share a container of the address space when the kernel accepts the group, else open one,
// pick the richest IOMMU type, read its capabilities and map guest memory into it.

import {
  FirstError, HostError, O_CLOEXEC, O_RDWR, VFIO_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_GET_API_VERSION,
  VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU,
  VFIO_UNMAP_ALL, VfioError, vfioCall, type HostKernel, type UndoStack, type VfioAddressSpace,
  type VfioIommuClass, type VmmEventBus,
} from '@vmmkit/core';
import { LegacyType1Container } from './legacy-type1-container.js';
import type { VfioGroup } from './vfio-group.js';

/** type1 v2 first: it refuses to split mappings, which is what QEMU and vmmkit expect. */
const IOMMU_TYPES = [VFIO_TYPE1v2_IOMMU, VFIO_TYPE1_IOMMU];

const fdArg = (fd: number): Uint8Array => {
  const arg = new Uint8Array(4);
  new DataView(arg.buffer).setInt32(0, fd, true);
  return arg;
};

export class Type1Connector {
  #next = 0;

  constructor(
    private readonly iommuClass: VfioIommuClass,
    private readonly host: HostKernel,
    private readonly events: VmmEventBus,
    private readonly containerPath: string,
  ) {}

  /** Join `group` to a container of `space`: an existing one if the kernel lets it, else a new one. */
  async connect(group: VfioGroup, space: VfioAddressSpace, undo: UndoStack): Promise<void> {
    for (const c of space.containersOf(this.iommuClass.kind)) {
      const container = c as LegacyType1Container;
      try {
        this.host.ioctl(group.fd, VFIO_GROUP_SET_CONTAINER, fdArg(container.fd));
      } catch (e) {
        // This container's IOMMU cannot take the group (a different IOMMU, say): try the next.
        if (e instanceof HostError) continue;
        throw e;
      }
      this.#join(group, container, undo);
      undo.push(() => this.#unsetContainer(group));
      return;
    }
    await this.#create(group, space, undo);
  }

  /**
   * Take `group` out of its container; the last group out frees the container. Every step runs
   * even if one fails (the container fd is closed regardless); the first failure is thrown.
   */
  async disconnect(group: VfioGroup): Promise<void> {
    const container = group.container;
    if (!container) return;
    container.groups.splice(container.groups.indexOf(group), 1);
    group.container = undefined;
    const last = container.groups.length === 0;
    const errors = new FirstError();
    // Unmap before the unset: unsetting the last group destroys the kernel's container.
    if (last) await errors.runAsync(() => container.stopListening());
    errors.run(() => this.#unsetContainer(group));
    if (last) errors.run(() => this.#destroy(container));
    errors.rethrow();
  }

  async #create(group: VfioGroup, space: VfioAddressSpace, undo: UndoStack): Promise<void> {
    const path = this.containerPath;
    const fd = vfioCall(`open ${path}`, undefined, () => this.host.open(path, O_RDWR | O_CLOEXEC));
    undo.push(() => this.host.close(fd));
    const version = vfioCall(`get the VFIO API version of ${path}`, undefined, () => this.host.ioctl(fd, VFIO_GET_API_VERSION));
    if (version !== VFIO_API_VERSION) {
      throw new VfioError(`use ${path}`, undefined, { detail: `supported VFIO API version ${VFIO_API_VERSION}, reported ${version}` });
    }
    const type = IOMMU_TYPES.find((t) => this.#hasExtension(fd, t));
    if (type === undefined) throw new VfioError(`set up a container on ${path}`, undefined, { detail: 'no available IOMMU models (type1 or type1v2)' });
    const unmapAll = this.#hasExtension(fd, VFIO_UNMAP_ALL);
    vfioCall(`set the container of group ${group.id}`, undefined, () => this.host.ioctl(group.fd, VFIO_GROUP_SET_CONTAINER, fdArg(fd)));
    undo.push(() => this.#unsetContainer(group));
    vfioCall(`set the IOMMU of the container for group ${group.id}`, undefined, () => this.host.ioctl(fd, VFIO_SET_IOMMU, type));
    const container = new LegacyType1Container(`legacy-container-${this.#next++}`, this.iommuClass, space, this.host, this.events, fd, type, unmapAll);
    container.setup();
    space.containers.push(container);
    undo.push(() => void space.containers.splice(space.containers.indexOf(container), 1));
    this.#join(group, container, undo);
    await container.startListening();
    undo.push(() => container.stopListening());
    this.events.emit('vfio:container-created', { container: container.id, backend: this.iommuClass.kind });
  }

  #join(group: VfioGroup, container: LegacyType1Container, undo: UndoStack): void {
    container.groups.push(group);
    group.container = container;
    undo.push(() => {
      container.groups.splice(container.groups.indexOf(group), 1);
      group.container = undefined;
    });
  }

  #destroy(container: LegacyType1Container): void {
    const spaceContainers = container.space.containers;
    spaceContainers.splice(spaceContainers.indexOf(container), 1);
    this.host.close(container.fd);
    this.events.emit('vfio:container-destroyed', { container: container.id, backend: this.iommuClass.kind });
  }

  #unsetContainer(group: VfioGroup): void {
    vfioCall(`disconnect group ${group.id} from its container`, undefined, () => this.host.ioctl(group.fd, VFIO_GROUP_UNSET_CONTAINER));
  }

  #hasExtension(fd: number, extension: number): boolean {
    try {
      return this.host.ioctl(fd, VFIO_CHECK_EXTENSION, extension) > 0;
    } catch {
      return false;
    }
  }
}
