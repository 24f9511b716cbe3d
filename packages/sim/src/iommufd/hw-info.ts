// IOMMU_GET_HW_INFO (iommufd_get_hw_info, drivers/iommu/iommufd/device.c): the driver's data
// blob copied up to data_len (the rest of the user's buffer zeroed), the kernel's length back in
// data_len, and the capability bits.

import { IOMMU_HW_CAP_DIRTY_TRACKING, iommu_hw_info } from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import type { Idev } from './idev.js';
import type { IommufdFile } from './iommufd-file.js';
import type { UcmdOf } from './ucmd.js';

/** Only bound PCI (and mock) devices have hw_info: an access (mdev) id is ENOENT. */
export function getHwInfo(ctx: IommufdFile, ucmd: UcmdOf<typeof iommu_hw_info>): number {
  if (ucmd.get('flags') || ucmd.get('__reserved').some((b) => b !== 0)) fail('EOPNOTSUPP', 'flags and __reserved must be 0');
  const idev = ctx.objects.get<Idev>(ucmd.get('dev_id'), 'device');
  const { type, data } = idev.client.unit.hwInfo(idev.client);
  const want = ucmd.get('data_len');
  const copy = Math.min(want, data.byteLength);
  if (want) {
    const out = new Uint8Array(want);
    out.set(data.subarray(0, copy));
    ctx.kernel.memory.write(ucmd.get('data_uptr'), out);
  }
  ucmd.set('out_data_type', type);
  ucmd.set('data_len', data.byteLength);
  const dirty = idev.client.unit.dirtyCapable(idev.client);
  ucmd.set('out_capabilities', dirty ? BigInt(IOMMU_HW_CAP_DIRTY_TRACKING) : 0n);
  // No sim IOMMU enables PASID, so max_pasids is 0 and nothing is reported.
  ucmd.set('out_max_pasid_log2', 0);
  ucmd.respond();
  return 0;
}
