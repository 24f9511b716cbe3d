// An iommufd access (struct iommufd_access, drivers/iommu/iommufd/device.c): how an emulated
// device (an mdev, bound through vfio's emulated iommufd ops) reaches an IOAS. It has no IOMMU and
// no domain: it attaches to an IOAS directly and its "DMA" is the CPU copying through the areas.

import type { DmaTarget, DmaTranslation } from '../iommu/dma-target.js';
import type { SimDevice } from '../kernel/sim-device.js';
import { translateThrough } from './dma-translate.js';
import type { Ioas } from './ioas.js';
import type { IommufdFile } from './iommufd-file.js';
import { addAccess, removeAccess } from './iopt-domains.js';
import { IommufdObject } from './object-table.js';

export class Access extends IommufdObject implements DmaTarget {
  readonly type = 'access' as const;
  ioas: Ioas | undefined;

  private constructor(
    readonly ctx: IommufdFile,
    readonly device: SimDevice,
  ) {
    super();
  }

  /** iommufd_access_create: the object, holding the iommufd open like any binding. */
  static create(ctx: IommufdFile, device: SimDevice): Access {
    const access = ctx.objects.add(new Access(ctx, device));
    ctx.kernel.census.add('access');
    ctx.ref();
    return access;
  }

  /** Held by the vfio driver until unbind. */
  get busy(): boolean {
    return true;
  }

  get description(): string {
    return `iommufd access ${this.id}`;
  }

  /**
   * iommufd_access_attach / iommufd_access_replace (vfio_iommufd_emulated_attach_ioas): only an
   * IOAS will do, so a HWPT id is ENOENT; EADDRINUSE if its areas break PAGE_SIZE alignment.
   */
  attach(ioasId: number): void {
    const ioas = this.ctx.objects.get<Ioas>(ioasId, 'ioas');
    if (ioas === this.ioas) return;
    addAccess(ioas.iopt, this);
    if (this.ioas) removeAccess(this.ioas.iopt, this);
    this.ioas = ioas;
    this.device.dmaTarget = this;
  }

  /** iommufd_access_detach. */
  detach(): void {
    if (!this.ioas) return;
    removeAccess(this.ioas.iopt, this);
    this.ioas = undefined;
    this.device.dmaTarget = undefined;
  }

  translate(iova: bigint, length: number, write: boolean): DmaTranslation {
    if (!this.ioas) return { fault: 'the access is not attached to an IOAS' };
    return translateThrough(this.ioas.iopt, iova, length, write);
  }

  /** An access has no IOPTEs: iommufd records no dirty state for its writes. */
  recordWrite(): void {}

  protected destroyed(): void {
    this.detach();
    this.ctx.kernel.census.remove('access');
    this.ctx.unref();
  }
}
