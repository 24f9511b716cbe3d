// IOMMU_TEST_CMD (iommufd_test in drivers/iommu/iommufd/selftest.c): mock domains and the ops the
// dirty-tracking selftests use. Only CONFIG_IOMMUFD_TEST kernels (SimKernel.features.selftest) have it.

import {
  IOMMU_TEST_OP_ADD_RESERVED, IOMMU_TEST_OP_DIRTY, IOMMU_TEST_OP_MD_CHECK_MAP, IOMMU_TEST_OP_MOCK_DOMAIN,
  IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE, IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT,
  iommu_test_cmd,
} from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import { changePt, detachPt } from './device-attach.js';
import { Idev } from './idev.js';
import type { Ioas } from './ioas.js';
import type { IommufdFile } from './iommufd-file.js';
import { MockDevice } from './mock-iommu.js';
import { IommufdObject } from './object-table.js';
import { checkMockMap, mockDirty } from './selftest-domain.js';
import type { UcmdOf } from './ucmd.js';

type TestCmd = UcmdOf<typeof iommu_test_cmd>;

const U64_MAX = (1n << 64n) - 1n;

/** Who owns the reservations IOMMU_TEST_OP_ADD_RESERVED makes. */
const TEST_RESERVATION = Symbol('selftest reservation');

/** A selftest object (struct selftest_obj, TYPE_IDEV): a mock device bound and attached; destroying it unbinds. */
class SelftestDevice extends IommufdObject {
  readonly type = 'selftest' as const;

  constructor(
    readonly ctx: IommufdFile,
    readonly idev: Idev,
  ) {
    super();
    ctx.kernel.census.add('selftest');
  }

  get busy(): boolean {
    return false;
  }

  protected destroyed(): void {
    if (this.idev.attached) detachPt(this.ctx, this.idev);
    this.ctx.objects.destroy(this.idev);
    this.ctx.kernel.census.remove('selftest');
  }
}

/** IOMMU_TEST_OP_MOCK_DOMAIN(_FLAGS): a mock device bound and attached to `id` (an IOAS or a HWPT). */
function mockDomain(ctx: IommufdFile, ucmd: TestCmd, flags: number): number {
  const sid = ctx.objects.allocId();
  try {
    const idev = Idev.create(ctx, new MockDevice(ctx.kernel.linux, flags), false);
    let hwptId: number;
    try {
      hwptId = changePt(ctx, idev, ucmd.get('id'), false);
      ucmd.set('mock_domain', { out_stdev_id: sid, out_hwpt_id: hwptId, out_idev_id: idev.id });
      ucmd.respond();
    } catch (e) {
      if (idev.attached) detachPt(ctx, idev);
      ctx.objects.destroy(idev);
      throw e;
    }
    ctx.objects.finalize(sid, new SelftestDevice(ctx, idev));
  } catch (e) {
    ctx.objects.abort(sid);
    throw e;
  }
  return 0;
}

/** IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE: move a mock device to another IOAS or HWPT (EINVAL if detached). */
function mockReplace(ctx: IommufdFile, ucmd: TestCmd): number {
  const sobj = ctx.objects.get<SelftestDevice>(ucmd.get('id'), 'selftest');
  const ptId = changePt(ctx, sobj.idev, ucmd.get('mock_domain_replace').pt_id, true);
  ucmd.set('mock_domain_replace', { pt_id: ptId });
  ucmd.respond();
  return 0;
}

/**
 * IOMMU_TEST_OP_ADD_RESERVED: reserve an IOVA range of an IOAS (EADDRINUSE over a mapping). The
 * range is checked before the IOAS is looked up (EINVAL for length 0, EOVERFLOW past 2^64), as
 * iommufd_test_add_reserved does: seen on Linux 7.2 in the kernel tier.
 */
function addReserved(ctx: IommufdFile, ucmd: TestCmd): number {
  const { start, length } = ucmd.get('add_reserved');
  if (length === 0n) fail('EINVAL', 'a reservation of length 0');
  if (start + length - 1n > U64_MAX) fail('EOVERFLOW', 'the reservation runs past the end of the IOVA space');
  const ioas = ctx.objects.get<Ioas>(ucmd.get('id'), 'ioas');
  ioas.iopt.reserve(start, start + length - 1n, TEST_RESERVATION);
  return 0;
}

/** The selftest ops SimHost models; the others answer EOPNOTSUPP as unknown ops do. */
export function selftestCmd(ctx: IommufdFile, ucmd: TestCmd): number {
  switch (ucmd.get('op')) {
    case IOMMU_TEST_OP_ADD_RESERVED:
      return addReserved(ctx, ucmd);
    case IOMMU_TEST_OP_MOCK_DOMAIN:
      return mockDomain(ctx, ucmd, 0);
    case IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS:
      return mockDomain(ctx, ucmd, ucmd.get('mock_domain_flags').dev_flags);
    case IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE:
      return mockReplace(ctx, ucmd);
    case IOMMU_TEST_OP_MD_CHECK_MAP:
      return checkMockMap(ctx, ucmd.get('id'), ucmd.get('check_map'));
    case IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT:
      // Protects the kernel's batch sizing; SimHost keeps no such batches.
      if (ucmd.get('memory_limit').limit < 12) fail('EINVAL', 'memory limit below one batch element');
      return 0;
    case IOMMU_TEST_OP_DIRTY:
      return mockDirty(ctx, ucmd);
    default:
      return fail('EOPNOTSUPP', `selftest op ${ucmd.get('op')} is not modelled`);
  }
}
