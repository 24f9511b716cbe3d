// An IOAS object (struct iommufd_ioas, drivers/iommu/iommufd/ioas.c): an IOVA space that HWPTs
// and accesses attach to. It stays while any of them holds it.

import type { Hwpt } from './hwpt.js';
import type { IommufdFile } from './iommufd-file.js';
import { IoPagetable } from './io-pagetable.js';
import { U64_MAX } from './iova-range.js';
import { IommufdObject } from './object-table.js';

export class Ioas extends IommufdObject {
  readonly type = 'ioas' as const;
  readonly iopt: IoPagetable;
  /** The paging HWPTs on this IOAS (hwpt_list), oldest first: auto-domain search order. */
  readonly hwpts = new Set<Hwpt>();

  constructor(readonly ctx: IommufdFile) {
    super();
    this.iopt = new IoPagetable(ctx.kernel.memory);
    ctx.kernel.census.add('ioas');
  }

  get busy(): boolean {
    return this.hwpts.size > 0 || this.iopt.accesses.size > 0;
  }

  protected destroyed(): void {
    this.iopt.unmap(0n, U64_MAX);
    if (this.ctx.vfioIoas === this) this.ctx.vfioIoas = undefined;
    this.ctx.kernel.census.remove('ioas');
  }
}
