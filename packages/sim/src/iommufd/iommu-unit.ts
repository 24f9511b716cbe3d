// The IOMMU driver side iommufd and type1 talk to (struct iommu_ops and a device's iommu caps):
// the machine's IOMMU units (an Intel VT-d-like driver) and the selftest's mock IOMMU implement it.

import { InvariantError } from '@vmmkit/core';
import {
  IOMMU_HWPT_ALLOC_PASID, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_ALLOC_NEST_PARENT,
} from '@vmmkit/core/uapi';
import type { UserMemory } from '../memory/user-memory.js';
import type { DmaTarget } from '../iommu/dma-target.js';
import type { SimDevice } from '../kernel/sim-device.js';
import type { SimGroup } from '../kernel/sim-group.js';
import type { SimIommu } from '../kernel/sim-iommu.js';
import type { IovaRange } from './iova-range.js';
import { vtdHwInfo } from './vtd-regs.js';

/** An IOMMU hardware unit with its driver. Devices behind different units never share a domain. */
export interface IommuUnit {
  /** For messages. */
  readonly name: string;
  /** The domain aperture (iommu_domain_geometry). */
  readonly aperture: IovaRange;
  /** IOMMU_HWPT_ALLOC_* flags the driver's domain_alloc_user accepts for a paging domain. */
  readonly allocFlags: number;
  /** Whether the driver can make nesting parents (IOMMU_HWPT_ALLOC_NEST_PARENT). */
  readonly nestParentCapable: boolean;
  /** pgsize_bitmap of a new paging domain for `dev`. */
  domainPageSizes(dev: IommuClient): bigint;
  /** Reserved regions of the device (iommu_get_resv_regions): IOVAs no mapping may use. */
  reservedRegions(dev: IommuClient): readonly IovaRange[];
  /** device_iommu_capable(dev, IOMMU_CAP_DIRTY_TRACKING). */
  dirtyCapable(dev: IommuClient): boolean;
  /** The iommu_ops->hw_info answer for the device. */
  hwInfo(dev: IommuClient): { readonly type: number; readonly data: Uint8Array };
  /**
   * Check the driver data of a paging HWPT (IOMMU_HWPT_ALLOC's data_type/data_uptr/data_len),
   * throwing as the driver refuses it. A unit without it takes no data (EOPNOTSUPP).
   */
  pagingData?(data: HwptUserData, memory: UserMemory): void;
  /** The driver's map refuses a mapping with neither read nor write permission (EINVAL). */
  readonly refusesNoAccess?: boolean;
}

/** struct iommu_user_data: the driver data of an IOMMU_HWPT_ALLOC. */
export interface HwptUserData {
  readonly type: number;
  readonly uptr: bigint;
  readonly len: number;
}

/** A device as the IOMMU layer sees it (struct device): a machine device, or a selftest mock device. */
export interface IommuClient {
  readonly name: string;
  readonly unit: IommuUnit;
  /** Its iommu_group: the unit of DMA ownership and of attachment. */
  readonly groupKey: object;
  /** Route the DMA of the device's whole group through `target` (undefined: blocked). */
  setDmaTarget(target: DmaTarget | undefined): void;
  /** log2 of the PASIDs the device has enabled (GET_HW_INFO's out_max_pasid_log2); none when absent. */
  readonly maxPasidLog2?: number;
}

/** The driver of a machine IOMMU unit (SimIommu). */
class MachineUnit implements IommuUnit {
  // iommufd strips FAULT_ID_VALID before the driver; PASID reaches it only on 7.x (second-stage tables take it).
  readonly allocFlags = IOMMU_HWPT_ALLOC_NEST_PARENT | IOMMU_HWPT_ALLOC_DIRTY_TRACKING | IOMMU_HWPT_ALLOC_PASID;
  // Like QEMU's VT-d without nesting support: NEST_PARENT is refused (EOPNOTSUPP).
  readonly nestParentCapable = false;
  // VT-d page tables have no entry for a page that can be neither read nor written.
  readonly refusesNoAccess = true;

  constructor(readonly iommu: SimIommu) {}

  get name(): string {
    return `iommu '${this.iommu.id}'`;
  }

  get aperture(): IovaRange {
    return this.iommu.aperture;
  }

  domainPageSizes(): bigint {
    return this.iommu.pageSizes;
  }

  reservedRegions(): readonly IovaRange[] {
    return this.iommu.reservedRegions;
  }

  dirtyCapable(): boolean {
    return this.iommu.dirtyTracking;
  }

  hwInfo(): { type: number; data: Uint8Array } {
    return vtdHwInfo(this.iommu);
  }
}

const units = new WeakMap<SimIommu, MachineUnit>();
const clients = new WeakMap<SimDevice, IommuClient>();

/** The unit driving a machine IOMMU (one per SimIommu, so identity compares units). */
export function machineUnit(iommu: SimIommu): IommuUnit {
  let unit = units.get(iommu);
  if (!unit) units.set(iommu, (unit = new MachineUnit(iommu)));
  return unit;
}

/** The IOMMU-layer view of a PCI device behind a machine IOMMU. */
export function machineClient(device: SimDevice): IommuClient {
  if (!device.iommu) throw new InvariantError(`sim: ${device.name} has no IOMMU (an mdev binds as an iommufd access)`);
  let client = clients.get(device);
  if (!client) {
    client = {
      name: device.name,
      unit: machineUnit(device.iommu),
      groupKey: device.group,
      setDmaTarget: (target) => setGroupDmaTarget(device.group, target),
    };
    clients.set(device, client);
  }
  return client;
}

/** Point every device of an IOMMU group at one IO page table: DMA is isolated per group. */
export function setGroupDmaTarget(group: SimGroup, target: DmaTarget | undefined): void {
  for (const d of group.devices) d.dmaTarget = target;
}
