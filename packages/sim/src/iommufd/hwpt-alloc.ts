// Making a paging HWPT: iommufd_hwpt_paging_alloc (drivers/iommu/iommufd/hw_pagetable.c) and
// the driver's domain_alloc_user checks (intel/iommu.c, selftest.c).

import {
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_FAULT_ID_VALID,
} from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import { Hwpt } from './hwpt.js';
import type { Idev } from './idev.js';
import { IoDomain } from './io-domain.js';
import type { Ioas } from './ioas.js';
import type { HwptUserData, IommuClient } from './iommu-unit.js';
import type { IommufdFile } from './iommufd-file.js';
import { addDomain } from './iopt-domains.js';
import { hwptAttach, hwptDetach } from './device-attach.js';

/**
 * domain_alloc_paging_flags for a paging domain: what the device's IOMMU driver accepts (the
 * flags come without FAULT_ID_VALID, which iommufd keeps to itself).
 */
export function allocDomain(ctx: IommufdFile, client: IommuClient, flags: number, userData?: HwptUserData): IoDomain {
  const unit = client.unit;
  if (flags & ~unit.allocFlags) fail('EOPNOTSUPP', `${unit.name} does not take HWPT flags 0x${(flags & ~unit.allocFlags).toString(16)}`);
  if (flags & IOMMU_HWPT_ALLOC_NEST_PARENT && !unit.nestParentCapable) fail('EOPNOTSUPP', `${unit.name} cannot nest`);
  const dirty = (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) !== 0;
  if (dirty && !unit.dirtyCapable(client)) fail('EOPNOTSUPP', `${unit.name} cannot track dirty IOPTEs for ${client.name}`);
  if (userData) {
    if (!unit.pagingData) fail('EOPNOTSUPP', `${unit.name} takes no driver data for a paging domain`);
    unit.pagingData(userData, ctx.kernel.memory);
  }
  return new IoDomain(unit, unit.domainPageSizes(client), unit.aperture, dirty);
}

/**
 * iommufd_hwpt_paging_alloc: a HWPT on `ioas` for `client`'s IOMMU, attached to `attachNow` first
 * when given (the auto-domain path), then filled from the IOAS. The result is committed but its
 * id is not finalized: the caller finalizes it or calls abort().
 */
export function allocHwptPaging(
  ctx: IommufdFile, ioas: Ioas, client: IommuClient, flags: number, attachNow?: Idev, userData?: HwptUserData,
): Hwpt {
  const valid = ctx.kernel.linux.pagingHwptFlags;
  if (flags & ~valid) fail('EOPNOTSUPP', `HWPT flags 0x${(flags & ~valid).toString(16)} are not paging flags of Linux ${ctx.kernel.linux.version}`);
  if (flags & IOMMU_HWPT_ALLOC_DIRTY_TRACKING && !client.unit.dirtyCapable(client)) fail('EOPNOTSUPP', `${client.name} cannot track dirty IOPTEs`);
  if (flags & IOMMU_HWPT_FAULT_ID_VALID && flags & IOMMU_HWPT_ALLOC_NEST_PARENT) fail('EOPNOTSUPP', 'a nesting parent takes no fault queue');
  const id = ctx.objects.allocId();
  let hwpt: Hwpt;
  try {
    const domain = allocDomain(ctx, client, flags & ~IOMMU_HWPT_FAULT_ID_VALID, userData);
    hwpt = new Hwpt(ctx, ioas, domain, (flags & IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0);
    hwpt.id = id;
    if (attachNow) hwptAttach(hwpt, attachNow);
    try {
      addDomain(ioas.iopt, hwpt.domain);
    } catch (e) {
      if (attachNow) hwptDetach(attachNow);
      throw e;
    }
  } catch (e) {
    ctx.objects.abort(id);
    throw e;
  }
  hwpt.commit(id);
  return hwpt;
}
