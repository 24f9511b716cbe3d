// Attaching a bound device to a page table (drivers/iommu/iommufd/device.c): a HWPT directly,
// or an IOAS through an automatic domain; replacing and detaching. The whole IOMMU group moves.

import { fail, SimErrno } from '../kernel/sim-errno.js';
import type { Hwpt } from './hwpt.js';
import { allocHwptPaging } from './hwpt-alloc.js';
import type { Idev } from './idev.js';
import type { Ioas } from './ioas.js';
import type { IommuClient } from './iommu-unit.js';
import type { IommufdFile } from './iommufd-file.js';
import { reserveDeviceRegions } from './iopt-domains.js';

/**
 * The driver's attach_dev check. Devices behind different IOMMU units never share a domain
 * (EINVAL, as on SMMUv3, where each SMMU instance has its own page table formats); a dirty
 * tracking domain refuses a device whose IOMMU cannot track (EINVAL).
 */
function checkCompatible(hwpt: Hwpt, client: IommuClient): void {
  if (hwpt.domain.unit !== client.unit) {
    fail('EINVAL', `${client.name} is behind ${client.unit.name}; hwpt ${hwpt.id} belongs to ${hwpt.domain.unit.name}`);
  }
  if (hwpt.domain.dirtyOps && !client.unit.dirtyCapable(client)) {
    fail('EINVAL', `hwpt ${hwpt.id} tracks dirty IOPTEs and ${client.name}'s IOMMU cannot`);
  }
}

/** iommufd_hw_pagetable_attach. */
export function hwptAttach(hwpt: Hwpt, idev: Idev): void {
  const g = idev.igroup;
  if (g.hwpt && g.hwpt !== hwpt) fail('EINVAL', `the IOMMU group of ${idev.client.name} is attached to hwpt ${g.hwpt.id}`);
  const iopt = hwpt.ioas.iopt;
  reserveDeviceRegions(iopt, idev.client.unit.reservedRegions(idev.client), idev);
  if (!g.attached.size) {
    try {
      checkCompatible(hwpt, idev.client);
    } catch (e) {
      iopt.unreserve(idev);
      throw e;
    }
    g.hwpt = hwpt;
    idev.client.setDmaTarget(hwpt);
  }
  g.attached.add(idev);
  hwpt.devices.add(idev);
}

/** iommufd_hw_pagetable_detach: returns the HWPT the device leaves. */
export function hwptDetach(idev: Idev): Hwpt {
  const g = idev.igroup;
  const hwpt = g.hwpt!;
  g.attached.delete(idev);
  hwpt.devices.delete(idev);
  if (!g.attached.size) {
    g.hwpt = undefined;
    idev.client.setDmaTarget(undefined);
  }
  hwpt.ioas.iopt.unreserve(idev);
  return hwpt;
}

/** iommufd_device_do_replace: move the group to `hwpt`; returns the HWPT it left (undefined if the same). */
function doReplace(idev: Idev, hwpt: Hwpt): Hwpt | undefined {
  const g = idev.igroup;
  if (!g.hwpt || !g.attached.has(idev)) fail('EINVAL', `${idev.client.name} is not attached`);
  if (hwpt === g.hwpt) return undefined;
  const old = g.hwpt;
  const moving = old.ioas !== hwpt.ioas;
  const devices = [...g.attached];
  const reserved: Idev[] = [];
  try {
    for (const d of moving ? devices : []) {
      reserveDeviceRegions(hwpt.ioas.iopt, d.client.unit.reservedRegions(d.client), d);
      reserved.push(d);
    }
    for (const d of devices) checkCompatible(hwpt, d.client);
  } catch (e) {
    for (const d of reserved) hwpt.ioas.iopt.unreserve(d);
    throw e;
  }
  if (moving) for (const d of devices) old.ioas.iopt.unreserve(d);
  g.hwpt = hwpt;
  for (const d of devices) {
    old.devices.delete(d);
    hwpt.devices.add(d);
  }
  idev.client.setDmaTarget(hwpt);
  return old;
}

/** Drop a reference on a HWPT: an automatic domain goes with its last device. */
export function hwptPut(ctx: IommufdFile, hwpt: Hwpt): void {
  if (hwpt.autoDomain && !hwpt.busy) ctx.objects.destroy(hwpt);
}

/**
 * iommufd_device_auto_get_domain: reuse an automatic domain of the IOAS that accepts the device
 * (EINVAL means incompatible: try the next), else allocate one. Never picks a user's HWPT.
 */
function autoGetDomain(ctx: IommufdFile, idev: Idev, ioas: Ioas, replace: boolean): { ptId: number; old?: Hwpt } {
  for (const hwpt of ioas.hwpts) {
    if (!hwpt.autoDomain) continue;
    try {
      const old = replace ? doReplace(idev, hwpt) : (hwptAttach(hwpt, idev), undefined);
      return { ptId: hwpt.id, old };
    } catch (e) {
      if (e instanceof SimErrno && e.code === 'EINVAL') continue;
      throw e;
    }
  }
  const hwpt = allocHwptPaging(ctx, ioas, idev.client, 0, replace ? undefined : idev);
  let old: Hwpt | undefined;
  try {
    if (replace) old = doReplace(idev, hwpt);
  } catch (e) {
    hwpt.abort();
    throw e;
  }
  hwpt.autoDomain = true;
  ctx.objects.finalize(hwpt.id, hwpt);
  return { ptId: hwpt.id, old };
}

/**
 * iommufd_device_attach / iommufd_device_replace: attach to `ptId` (a paging HWPT, or an IOAS
 * through an automatic domain). Returns the HWPT id now in use; ENOENT for an unknown id, EINVAL
 * for another kind of object.
 */
export function changePt(ctx: IommufdFile, idev: Idev, ptId: number, replace: boolean): number {
  const pt = ctx.objects.get(ptId);
  let result: { ptId: number; old?: Hwpt };
  if (pt.type === 'hwpt_paging') {
    const hwpt = pt as Hwpt;
    result = { ptId, old: replace ? doReplace(idev, hwpt) : (hwptAttach(hwpt, idev), undefined) };
  } else if (pt.type === 'ioas') {
    result = autoGetDomain(ctx, idev, pt as Ioas, replace);
  } else {
    return fail('EINVAL', `object ${ptId} is a ${pt.type}, not an IOAS or a HWPT`);
  }
  if (result.old) hwptPut(ctx, result.old);
  return result.ptId;
}

/** iommufd_device_detach. */
export function detachPt(ctx: IommufdFile, idev: Idev): void {
  hwptPut(ctx, hwptDetach(idev));
}
