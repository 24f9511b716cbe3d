// An open /dev/vfio/vfio: a legacy VFIO container (drivers/vfio/container.c). Groups join it;
// VFIO_SET_IOMMU then opens the type1 backend over them, and every other ioctl goes to that
// backend. Groups hold the container, so it outlives its fd until the last group leaves.

import {
  VFIO_API_VERSION, VFIO_CHECK_EXTENSION, VFIO_GET_API_VERSION, VFIO_SET_IOMMU, VFIO_TYPE1_IOMMU,
  VFIO_TYPE1_NESTING_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_UNMAP_ALL,
} from '@vmmkit/core/uapi';
import { claimGroup, releaseDmaOwner } from '../iommufd/dma-owner.js';
import type { SimGroup } from '../kernel/sim-group.js';
import type { SimKernel } from '../kernel/sim-kernel.js';
import { fail } from '../kernel/sim-errno.js';
import { SimFile, type IoctlArg } from '../kernel/sim-file.js';
import { type1CheckExtension, type1Ioctl } from './type1-info.js';
import { Type1Iommu } from './type1-iommu.js';

export class VfioContainerFile extends SimFile {
  readonly kind = 'vfio-container' as const;
  /** Attached groups (container->group_list), in attach order. */
  readonly groups = new Set<SimGroup>();
  /** The IOMMU backend VFIO_SET_IOMMU opened (iommu_driver + iommu_data). */
  type1: Type1Iommu | undefined;

  constructor(protected readonly kernel: SimKernel) {
    super();
  }

  /** vfio_fops_unl_ioctl: without a backend, anything but the three container ioctls is EINVAL. */
  override ioctl(request: number, arg: IoctlArg): number {
    if (request === VFIO_GET_API_VERSION) return VFIO_API_VERSION;
    if (request === VFIO_CHECK_EXTENSION) return type1CheckExtension(this.kernel, this.type1, intArg(arg));
    if (request === VFIO_SET_IOMMU) return this.#setIommu(intArg(arg));
    if (!this.type1) return fail('EINVAL', 'no IOMMU set on the container (VFIO_SET_IOMMU)');
    return type1Ioctl(this.type1, request, arg);
  }

  /**
   * vfio_container_attach_group (VFIO_GROUP_SET_CONTAINER): claim the group's DMA (EPERM if a
   * host driver or another user owns it) and attach it to the backend if there is one.
   */
  attachGroup(group: SimGroup): void {
    claimGroup(group, this);
    try {
      this.type1?.attachGroup(group);
    } catch (e) {
      releaseDmaOwner(group);
      throw e;
    }
    this.groups.add(group);
    this.ref();
  }

  /** vfio_group_detach_container: the last group's departure releases the backend. */
  detachGroup(group: SimGroup): void {
    this.type1?.detachGroup(group);
    releaseDmaOwner(group);
    this.groups.delete(group);
    if (this.type1 && !this.groups.size) {
      this.type1.release();
      this.type1 = undefined;
      this.kernel.census.remove('container');
    }
    this.unref();
  }

  /**
   * vfio_ioctl_set_iommu: needs a group and no backend yet (EINVAL); TYPE1 or TYPE1v2 attach every
   * group (their errors undo it); a type no driver offers is ENODEV.
   */
  #setIommu(type: bigint): number {
    if (!this.groups.size || this.type1) fail('EINVAL', this.type1 ? 'the IOMMU is already set' : 'no group is attached to the container');
    const v2 = type === BigInt(VFIO_TYPE1v2_IOMMU);
    if (!v2 && type !== BigInt(VFIO_TYPE1_IOMMU)) {
      // type1 claims UNMAP_ALL (and, on 6.12, NESTING) in CHECK_EXTENSION but cannot open them here.
      const nesting = type === BigInt(VFIO_TYPE1_NESTING_IOMMU) && this.kernel.linux.type1Nesting;
      if (nesting || type === BigInt(VFIO_UNMAP_ALL)) fail('EINVAL', `IOMMU type ${type} cannot be set`);
      fail('ENODEV', `no IOMMU driver offers type ${type}`);
    }
    const type1 = new Type1Iommu(this.kernel, v2);
    const attached: SimGroup[] = [];
    try {
      for (const g of this.groups) {
        type1.attachGroup(g);
        attached.push(g);
      }
    } catch (e) {
      for (const g of attached.reverse()) type1.detachGroup(g);
      throw e;
    }
    this.type1 = type1;
    this.kernel.census.add('container');
    return 0;
  }
}

/** An integer ioctl argument; a struct pointer never equals a small constant. */
function intArg(arg: IoctlArg): bigint {
  return arg instanceof Uint8Array ? -1n : BigInt(arg);
}
