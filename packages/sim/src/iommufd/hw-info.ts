// IOMMU_GET_HW_INFO (iommufd_get_hw_info, drivers/iommu/iommufd/device.c): the driver's data
// blob copied up to data_len (the rest of the user's buffer zeroed), the kernel's length back in
// data_len, and the capability bits.

import {
  IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED, IOMMU_HW_INFO_FLAG_INPUT_TYPE, IOMMU_HW_INFO_TYPE_DEFAULT, iommu_hw_info_7_2,
  IOMMU_HW_CAP_DIRTY_TRACKING,
} from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import type { Idev } from './idev.js';
import type { IommufdFile } from './iommufd-file.js';
import type { UcmdOf } from './ucmd.js';

/**
 * Only bound PCI (and mock) devices have hw_info: an access (mdev) id is ENOENT. The flags the
 * series knows (7.x: INPUT_TYPE, which asks the driver for a data type) are checked first.
 */
export function getHwInfo(ctx: IommufdFile, ucmd: UcmdOf<typeof iommu_hw_info_7_2>): number {
  const series = ctx.kernel.linux;
  const flags = ucmd.get('flags');
  if (flags & ~series.hwInfoFlags || ucmd.get('__reserved').some((b) => b !== 0)) fail('EOPNOTSUPP', 'unknown flags or a non-zero __reserved');
  // Without INPUT_TYPE the field is an output only: any input counts as DEFAULT.
  const wanted = flags & IOMMU_HW_INFO_FLAG_INPUT_TYPE ? ucmd.get('in_data_type') : IOMMU_HW_INFO_TYPE_DEFAULT;
  const idev = ctx.objects.get<Idev>(ucmd.get('dev_id'), 'device');
  const { type, data } = idev.client.unit.hwInfo(idev.client);
  // Every driver answers DEFAULT or its own type (intel_iommu_hw_info, mock_domain_hw_info).
  if (wanted !== IOMMU_HW_INFO_TYPE_DEFAULT && wanted !== type) fail('EOPNOTSUPP', `the driver has no hw_info of type ${wanted}`);
  const want = ucmd.get('data_len');
  const copy = Math.min(want, data.byteLength);
  if (want) {
    const out = new Uint8Array(want);
    out.set(data.subarray(0, copy));
    ctx.kernel.memory.write(ucmd.get('data_uptr'), out);
  }
  ucmd.set('out_data_type', type);
  ucmd.set('data_len', data.byteLength);
  let caps = idev.client.unit.dirtyCapable(idev.client) ? BigInt(IOMMU_HW_CAP_DIRTY_TRACKING) : 0n;
  // No SimHost device or mock can use ATS.
  if (series.reportsAtsNotSupported) caps |= BigInt(IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED);
  ucmd.set('out_capabilities', caps);
  // log2 of the PASIDs the device has enabled: only 7.x's PASID mock devices have any.
  ucmd.set('out_max_pasid_log2', idev.client.maxPasidLog2 ?? 0);
  ucmd.respond();
  return 0;
}
