// The HWPT ioctls (drivers/iommu/iommufd/hw_pagetable.c): IOMMU_HWPT_ALLOC,
// IOMMU_HWPT_SET_DIRTY_TRACKING, IOMMU_HWPT_GET_DIRTY_BITMAP and IOMMU_HWPT_INVALIDATE, plus
// IOMMU_FAULT_QUEUE_ALLOC (fault.c), which 6.12 has and SimHost does not model.

import {
  IOMMU_HWPT_DATA_SELFTEST, _IO, defineStruct, IOMMU_HWPT_DATA_NONE, IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
  IOMMU_HWPT_FAULT_ID_VALID, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, IOMMUFD_CMD_BASE, IOMMUFD_TYPE, iommu_hwpt_alloc,
  iommu_hwpt_get_dirty_bitmap, iommu_hwpt_set_dirty_tracking, u32, u64,
} from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import { readDirtyBitmap } from './dirty-bitmap.js';
import type { Hwpt } from './hwpt.js';
import { allocHwptPaging } from './hwpt-alloc.js';
import type { Idev } from './idev.js';
import type { Ioas } from './ioas.js';
import type { IommufdFile } from './iommufd-file.js';
import { isMockUnit } from './mock-iommu.js';
import type { UcmdOf } from './ucmd.js';

/** struct iommu_hwpt_invalidate (6.12), not among the facts core declares. */
export const iommu_hwpt_invalidate = defineStruct('iommu_hwpt_invalidate', {
  size: u32, hwpt_id: u32, data_uptr: u64, data_type: u32, entry_len: u32, entry_num: u32, __reserved: u32,
});
export const IOMMU_HWPT_INVALIDATE = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 13);

/** struct iommu_fault_alloc (6.12). */
export const iommu_fault_alloc = defineStruct('iommu_fault_alloc', { size: u32, flags: u32, out_fault_id: u32, out_fault_fd: u32 });
export const IOMMU_FAULT_QUEUE_ALLOC = _IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 14);

/**
 * iommufd_hwpt_nested_alloc's checks, then the driver's. SimHost models no nested domains: the
 * mock would make one from IOMMU_HWPT_DATA_SELFTEST data, any other data it refuses (EOPNOTSUPP),
 * and no machine IOMMU can be a nesting parent.
 */
function nestedAlloc(ctx: IommufdFile, parent: Hwpt, idev: Idev, flags: number, dataType: number, dataLen: number): never {
  const valid = ctx.kernel.linux.nestedHwptFlags;
  if (flags & ~valid || !dataLen) fail('EOPNOTSUPP', 'nested HWPT flags the series lacks, or no driver data');
  if (parent.autoDomain || !parent.nestParent || parent.domain.unit !== idev.client.unit) {
    fail('EINVAL', `hwpt ${parent.id} is not a nesting parent of ${idev.client.name}'s IOMMU`);
  }
  if (isMockUnit(parent.domain.unit) && dataType === IOMMU_HWPT_DATA_SELFTEST) return fail('EOPNOTSUPP', 'nested mock HWPTs are not modelled');
  return fail('EOPNOTSUPP', `the driver takes no nested data of type ${dataType}`);
}

/**
 * IOMMU_HWPT_ALLOC: a paging HWPT on an IOAS for a bound device. EINVAL for data without a type
 * (or the other way round) and for an unknown pt_id, ENOENT for an unknown device, EOPNOTSUPP for
 * what the device's IOMMU cannot do (dirty tracking, nesting, driver data).
 */
export function hwptAlloc(ctx: IommufdFile, ucmd: UcmdOf<typeof iommu_hwpt_alloc>): number {
  if (ucmd.get('__reserved')) fail('EOPNOTSUPP', '__reserved must be 0');
  const [dataType, dataLen] = [ucmd.get('data_type'), ucmd.get('data_len')];
  // Checked before any lookup: a data_type needs data, and data needs a data_type.
  if (dataType === IOMMU_HWPT_DATA_NONE && dataLen) fail('EINVAL', 'data_len without a data_type');
  if (dataType !== IOMMU_HWPT_DATA_NONE && !dataLen) fail('EINVAL', `data_type ${dataType} without data_len`);
  const idev = ctx.objects.get<Idev>(ucmd.get('dev_id'), 'device');
  const pt = ctx.objects.find(ucmd.get('pt_id'));
  if (!pt) return fail('EINVAL', `no object ${ucmd.get('pt_id')}`);
  const flags = ucmd.get('flags');
  if (pt.type === 'hwpt_paging') return nestedAlloc(ctx, pt as Hwpt, idev, flags, dataType, dataLen);
  if (pt.type !== 'ioas') return fail('EINVAL', `object ${pt.id} is a ${pt.type}`);
  const userData = dataLen ? { type: dataType, uptr: ucmd.get('data_uptr'), len: dataLen } : undefined;
  const hwpt = allocHwptPaging(ctx, pt as Ioas, idev.client, flags, undefined, userData);
  try {
    // No fault queue object can exist here (IOMMU_FAULT_QUEUE_ALLOC is not modelled).
    if (flags & IOMMU_HWPT_FAULT_ID_VALID) fail('ENOENT', `no fault queue ${ucmd.get('fault_id')}`);
    ucmd.set('out_hwpt_id', hwpt.id);
    ucmd.respond();
  } catch (e) {
    hwpt.abort();
    throw e;
  }
  ctx.objects.finalize(hwpt.id, hwpt);
  return 0;
}

/**
 * IOMMU_HWPT_SET_DIRTY_TRACKING: EOPNOTSUPP unless the HWPT was allocated for dirty tracking.
 * Enabling clears the IOPTE dirty bits first (a clean snapshot), even when already enabled.
 */
export function setDirtyTracking(ctx: IommufdFile, ucmd: UcmdOf<typeof iommu_hwpt_set_dirty_tracking>): number {
  const flags = ucmd.get('flags');
  if (flags & ~IOMMU_HWPT_DIRTY_TRACKING_ENABLE) fail('EOPNOTSUPP', `unknown flags 0x${flags.toString(16)}`);
  const hwpt = ctx.objects.get<Hwpt>(ucmd.get('hwpt_id'), 'hwpt_paging');
  if (!hwpt.domain.dirtyOps) fail('EOPNOTSUPP', `hwpt ${hwpt.id} was not allocated for dirty tracking`);
  const enable = (flags & IOMMU_HWPT_DIRTY_TRACKING_ENABLE) !== 0;
  if (enable) hwpt.domain.dirty.clear();
  hwpt.setTracking(enable);
  return 0;
}

/** IOMMU_HWPT_GET_DIRTY_BITMAP: flags other than NO_CLEAR and a non-zero __reserved are EOPNOTSUPP. */
export function getDirtyBitmap(ctx: IommufdFile, ucmd: UcmdOf<typeof iommu_hwpt_get_dirty_bitmap>): number {
  const flags = ucmd.get('flags');
  if (flags & ~IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR || ucmd.get('__reserved')) fail('EOPNOTSUPP', 'unknown flags or __reserved');
  const hwpt = ctx.objects.get<Hwpt>(ucmd.get('hwpt_id'), 'hwpt_paging');
  readDirtyBitmap(hwpt, {
    iova: ucmd.get('iova'), length: ucmd.get('length'), pageSize: ucmd.get('page_size'), data: ucmd.get('data'),
    noClear: (flags & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) !== 0,
  });
  return 0;
}

/**
 * IOMMU_HWPT_INVALIDATE: only nested HWPTs (and vIOMMUs, later) take invalidations, and SimHost
 * has none, so a valid request ends in ENOENT. entry_num comes back as the 0 entries handled.
 */
export function hwptInvalidate(ctx: IommufdFile, ucmd: UcmdOf<typeof iommu_hwpt_invalidate>): number {
  let error: [code: 'EOPNOTSUPP' | 'EINVAL' | 'ENOENT', why: string];
  if (ucmd.get('__reserved')) error = ['EOPNOTSUPP', '__reserved must be 0'];
  else if (ucmd.get('entry_num') && (!ucmd.get('data_uptr') || !ucmd.get('entry_len'))) error = ['EINVAL', 'entries without data'];
  else error = ['ENOENT', `no nested hwpt ${ucmd.get('hwpt_id')}`];
  ucmd.set('entry_num', 0);
  ucmd.respond();
  return fail(...error);
}

/** IOMMU_FAULT_QUEUE_ALLOC: flags are checked as in 6.12; IOPF fault queues are not modelled. */
export function faultQueueAlloc(_ctx: IommufdFile, ucmd: UcmdOf<typeof iommu_fault_alloc>): number {
  if (ucmd.get('flags')) fail('EOPNOTSUPP', 'IOMMU_FAULT_QUEUE_ALLOC takes no flags');
  return fail('EOPNOTSUPP', 'IOPF fault queues are not modelled by SimHost');
}
