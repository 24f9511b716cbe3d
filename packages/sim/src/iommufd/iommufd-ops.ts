// The iommufd ioctl table of Linux 6.12 (iommufd_ioctl_ops in drivers/iommu/iommufd/main.c; 7.2 adds
// IOAS_MAP_FILE and the vIOMMU ioctls, which SimHost does not model):
// for each number, the struct, the smallest size a caller may pass, and the handler.

import {
  iommu_hw_info_7_2, IOMMU_DESTROY, IOMMU_GET_HW_INFO, IOMMU_HWPT_ALLOC, IOMMU_HWPT_GET_DIRTY_BITMAP,
  IOMMU_HWPT_SET_DIRTY_TRACKING, IOMMU_IOAS_ALLOC, IOMMU_IOAS_ALLOW_IOVAS, IOMMU_IOAS_COPY, IOMMU_IOAS_IOVA_RANGES,
  IOMMU_IOAS_MAP, IOMMU_IOAS_UNMAP, IOMMU_OPTION, IOMMU_TEST_CMD, IOMMU_VFIO_IOAS, IOMMUFD_CMD_BASE, iommu_destroy,
  iommu_hwpt_alloc, iommu_hwpt_get_dirty_bitmap, iommu_hwpt_set_dirty_tracking, iommu_ioas_alloc,
  iommu_ioas_allow_iovas, iommu_ioas_copy, iommu_ioas_iova_ranges, iommu_ioas_map, iommu_ioas_unmap, iommu_option,
  iommu_test_cmd, iommu_vfio_ioas, type StructType,
} from '@vmmkit/core/uapi';
import { getHwInfo } from './hw-info.js';
import {
  getDirtyBitmap, hwptAlloc, hwptInvalidate, IOMMU_FAULT_QUEUE_ALLOC, IOMMU_HWPT_INVALIDATE, iommu_fault_alloc,
  iommu_hwpt_invalidate, setDirtyTracking, faultQueueAlloc,
} from './hwpt-ioctls.js';
import { ioasAlloc, ioasAllowIovas, ioasCopy, ioasIovaRanges, ioasMap, ioasUnmap } from './ioas-ioctls.js';
import type { IommufdFile } from './iommufd-file.js';
import { option, vfioIoas } from './option-ioctls.js';
import { selftestCmd } from './selftest.js';
import { offsetofend, type IommufdOp, type Ucmd, type UcmdOf } from './ucmd.js';

type Handler = (ctx: IommufdFile, ucmd: Ucmd<any>) => number;

function op(request: number, struct: StructType<any>, last: string, execute: Handler): IommufdOp<IommufdFile> {
  return { request, struct, minSize: offsetofend(struct, last), execute };
}

/** IOMMU_DESTROY: ENOENT for an unknown id, EBUSY while referenced; devices are never the user's to destroy. */
function destroy(ctx: IommufdFile, ucmd: UcmdOf<typeof iommu_destroy>): number {
  ctx.objects.destroyUser(ucmd.get('id'));
  return 0;
}

const BASE: IommufdOp<IommufdFile>[] = [
  op(IOMMU_DESTROY, iommu_destroy, 'id', destroy),
  op(IOMMU_IOAS_ALLOC, iommu_ioas_alloc, 'out_ioas_id', ioasAlloc),
  op(IOMMU_IOAS_ALLOW_IOVAS, iommu_ioas_allow_iovas, 'allowed_iovas', ioasAllowIovas),
  op(IOMMU_IOAS_COPY, iommu_ioas_copy, 'src_iova', ioasCopy),
  op(IOMMU_IOAS_IOVA_RANGES, iommu_ioas_iova_ranges, 'out_iova_alignment', ioasIovaRanges),
  op(IOMMU_IOAS_MAP, iommu_ioas_map, 'iova', ioasMap),
  op(IOMMU_IOAS_UNMAP, iommu_ioas_unmap, 'length', ioasUnmap),
  op(IOMMU_OPTION, iommu_option, 'val64', option),
  op(IOMMU_VFIO_IOAS, iommu_vfio_ioas, '__reserved', vfioIoas),
  op(IOMMU_HWPT_ALLOC, iommu_hwpt_alloc, '__reserved', hwptAlloc),
  // 7.2's layout (in_data_type beside out_data_type) is 6.12's with one more name for the same field.
  op(IOMMU_GET_HW_INFO, iommu_hw_info_7_2, '__reserved', getHwInfo),
  op(IOMMU_HWPT_SET_DIRTY_TRACKING, iommu_hwpt_set_dirty_tracking, '__reserved', setDirtyTracking),
  op(IOMMU_HWPT_GET_DIRTY_BITMAP, iommu_hwpt_get_dirty_bitmap, 'data', getDirtyBitmap),
  op(IOMMU_HWPT_INVALIDATE, iommu_hwpt_invalidate, '__reserved', hwptInvalidate),
  op(IOMMU_FAULT_QUEUE_ALLOC, iommu_fault_alloc, 'out_fault_fd', faultQueueAlloc),
];

const WITH_SELFTEST: (IommufdOp<IommufdFile> | undefined)[] = [...BASE];
WITH_SELFTEST[(IOMMU_TEST_CMD & 0xff) - IOMMUFD_CMD_BASE] = op(IOMMU_TEST_CMD, iommu_test_cmd, 'last', selftestCmd);

/** The table, with IOMMU_TEST_CMD (and the gap before it) on CONFIG_IOMMUFD_TEST kernels. */
export function iommufdOps(selftest: boolean): readonly (IommufdOp<IommufdFile> | undefined)[] {
  return selftest ? WITH_SELFTEST : BASE;
}
