// IOMMU_OPTION (RLIMIT_MODE per context, HUGE_PAGES per IOAS: drivers/iommu/iommufd/{main.c,ioas.c})
// and IOMMU_VFIO_IOAS, which picks the IOAS of the VFIO compat container (vfio_compat.c).

import {
  IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, IOMMU_OPTION_OP_SET, IOMMU_OPTION_RLIMIT_MODE,
  IOMMU_VFIO_IOAS_CLEAR, IOMMU_VFIO_IOAS_GET, IOMMU_VFIO_IOAS_SET, iommu_option, iommu_vfio_ioas, u64,
} from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import type { Ioas } from './ioas.js';
import type { IommufdFile } from './iommufd-file.js';
import { disableLargePages, enableLargePages } from './iopt-domains.js';
import type { UcmdOf } from './ucmd.js';

type OptionCmd = UcmdOf<typeof iommu_option>;

/** iommufd_option_rlimit_mode: per context, changeable only while the context is empty (EBUSY). */
function rlimitMode(ctx: IommufdFile, ucmd: OptionCmd): bigint {
  if (ucmd.get('object_id')) fail('EOPNOTSUPP', 'RLIMIT_MODE applies to the context, object_id must be 0');
  const op = ucmd.get('op');
  if (op === IOMMU_OPTION_OP_GET) return ctx.accountMode === 'mm' ? 1n : 0n;
  if (op !== IOMMU_OPTION_OP_SET) return fail('EOPNOTSUPP', `unknown option op ${op}`);
  if (ctx.objects.size) fail('EBUSY', 'the context already has objects');
  const val = ucmd.get('val64');
  if (val > 1n) fail('EINVAL', `RLIMIT_MODE ${val} is neither 0 (user) nor 1 (mm)`);
  ctx.accountMode = val ? 'mm' : 'user';
  return val;
}

/** iommufd_ioas_option_huge_pages: EINVAL to disable once domains hold mappings. */
function hugePages(ctx: IommufdFile, ucmd: OptionCmd): bigint {
  const ioas = ctx.objects.get<Ioas>(ucmd.get('object_id'), 'ioas');
  const op = ucmd.get('op');
  if (op === IOMMU_OPTION_OP_GET) return ioas.iopt.disableLargePages ? 0n : 1n;
  if (op !== IOMMU_OPTION_OP_SET) return fail('EOPNOTSUPP', `unknown option op ${op}`);
  const val = ucmd.get('val64');
  if (val === 0n) disableLargePages(ioas.iopt);
  else if (val === 1n) enableLargePages(ioas.iopt);
  else fail('EINVAL', `HUGE_PAGES ${val} is neither 0 nor 1`);
  return val;
}

/** IOMMU_OPTION: only val64 is written back, and only on success. */
export function option(ctx: IommufdFile, ucmd: OptionCmd): number {
  if (ucmd.get('__reserved')) fail('EOPNOTSUPP', '__reserved must be 0');
  const id = ucmd.get('option_id');
  let val: bigint;
  if (id === IOMMU_OPTION_RLIMIT_MODE) val = rlimitMode(ctx, ucmd);
  else if (id === IOMMU_OPTION_HUGE_PAGES) val = hugePages(ctx, ucmd);
  else return fail('EOPNOTSUPP', `unknown option ${id}`);
  const out = new Uint8Array(8);
  u64.write(new DataView(out.buffer), 0, val);
  ucmd.userArg.write(iommu_option.members.val64.offset, out);
  return 0;
}

/** IOMMU_VFIO_IOAS: GET (ENODEV without one), SET (ENOENT for a non-IOAS id) or CLEAR the compat IOAS. */
export function vfioIoas(ctx: IommufdFile, ucmd: UcmdOf<typeof iommu_vfio_ioas>): number {
  if (ucmd.get('__reserved')) fail('EOPNOTSUPP', '__reserved must be 0');
  const op = ucmd.get('op');
  if (op === IOMMU_VFIO_IOAS_GET) {
    if (!ctx.vfioIoas) fail('ENODEV', 'no compat IOAS');
    ucmd.set('ioas_id', ctx.vfioIoas.id);
    ucmd.respond();
  } else if (op === IOMMU_VFIO_IOAS_SET) {
    ctx.vfioIoas = ctx.objects.get<Ioas>(ucmd.get('ioas_id'), 'ioas');
  } else if (op === IOMMU_VFIO_IOAS_CLEAR) {
    ctx.vfioIoas = undefined;
  } else {
    fail('EOPNOTSUPP', `unknown op ${op}`);
  }
  return 0;
}
