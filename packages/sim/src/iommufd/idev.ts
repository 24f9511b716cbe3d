// A device bound to an iommufd (struct iommufd_device and its struct iommufd_group,
// drivers/iommu/iommufd/device.c): bind claims DMA ownership; devices of one IOMMU group bound to
// the same context share the group's attachment.

import type { Hwpt } from './hwpt.js';
import { claimDevice, releaseDmaOwner } from './dma-owner.js';
import type { IommuClient } from './iommu-unit.js';
import type { IommufdFile } from './iommufd-file.js';
import { IommufdObject } from './object-table.js';

/** iommufd_group: the attachment shared by the bound devices of one IOMMU group. */
export class IGroup {
  /** The HWPT the whole group is attached to. */
  hwpt: Hwpt | undefined;
  /** Bound devices the user attached (device_list); each holds a reference on `hwpt`. */
  readonly attached = new Set<Idev>();
  /** Bound devices of the group in this context. */
  bound = 0;

  constructor(readonly key: object) {}
}

export class Idev extends IommufdObject {
  readonly type = 'device' as const;

  private constructor(
    readonly ctx: IommufdFile,
    readonly client: IommuClient,
    readonly igroup: IGroup,
    /** Whether the binding keeps the iommufd file open (every driver but the selftest's). */
    private readonly holdsCtx: boolean,
  ) {
    super();
  }

  /**
   * iommufd_device_bind: claim the device's DMA (EPERM if a host driver, a container or another
   * context owns its group) and add the device object.
   */
  static create(ctx: IommufdFile, client: IommuClient, holdsCtx: boolean): Idev {
    claimDevice(client.groupKey, ctx);
    let igroup = ctx.igroups.get(client.groupKey);
    if (!igroup) ctx.igroups.set(client.groupKey, (igroup = new IGroup(client.groupKey)));
    igroup.bound++;
    const idev = ctx.objects.add(new Idev(ctx, client, igroup, holdsCtx));
    ctx.kernel.census.add('device_bind');
    if (holdsCtx) ctx.ref();
    return idev;
  }

  /** The binding driver holds the device until it unbinds, so the user can never destroy it. */
  get busy(): boolean {
    return true;
  }

  get attached(): boolean {
    return this.igroup.attached.has(this);
  }

  protected destroyed(): void {
    releaseDmaOwner(this.client.groupKey);
    if (--this.igroup.bound === 0) this.ctx.igroups.delete(this.igroup.key);
    this.ctx.kernel.census.remove('device_bind');
    if (this.holdsCtx) this.ctx.unref();
  }
}
