// The Intel VT-d capability registers a machine IOMMU unit reports through IOMMU_GET_HW_INFO
// (struct iommu_hw_info_vtd, drivers/iommu/intel/iommu.c intel_iommu_hw_info), derived from the
// unit's address width, page sizes and dirty-tracking support.

import {
  IOMMU_HW_INFO_TYPE_INTEL_VTD, IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17, iommu_hw_info_vtd,
} from '@vmmkit/core/uapi';
import type { SimIommu } from '../kernel/sim-iommu.js';

// QEMU's emulated VT-d as the realhost probe read it (cap 0xd2008c22260286, ecap 0xf00f4a): the
// fields that do not depend on the unit's configuration are kept from there.
const BASE_CAP = 0x00d2_008c_2226_0286n;
const BASE_ECAP = 0x00f0_0f4an;

const CAP_SAGAW_SHIFT = 8n;
const CAP_MGAW_SHIFT = 16n;
const CAP_SLLPS_SHIFT = 34n;
const CAP_VARIABLE = (0x1fn << CAP_SAGAW_SHIFT) | (0x3fn << CAP_MGAW_SHIFT) | (0xfn << CAP_SLLPS_SHIFT);

const ECAP_SMTS = 1n << 43n; // scalable mode translation
const ECAP_SLADS = 1n << 45n; // second-level accessed/dirty support
const ECAP_SLTS = 1n << 46n; // second-level translation in scalable mode

/** The capability register: SAGAW and MGAW from the address width, SLLPS from the page sizes. */
export function vtdCapReg(iommu: SimIommu): bigint {
  const aw = BigInt(iommu.awBits);
  // Adjusted guest address widths: 39-bit 3-level always, 48-bit 4-level and 57-bit 5-level tables when wide enough.
  let sagaw = 0b00010n;
  if (aw > 39n) sagaw |= 0b00100n;
  if (aw > 48n) sagaw |= 0b01000n;
  let sllps = 0n;
  if (iommu.pageSizes & (1n << 21n)) sllps |= 1n; // 2 MiB
  if (iommu.pageSizes & (1n << 30n)) sllps |= 2n; // 1 GiB
  return (BASE_CAP & ~CAP_VARIABLE) | (sagaw << CAP_SAGAW_SHIFT) | ((aw - 1n) << CAP_MGAW_SHIFT) | (sllps << CAP_SLLPS_SHIFT);
}

/**
 * The extended capability register. Snoop control stays clear (as on QEMU), so domains never
 * enforce cache coherency; dirty tracking needs scalable-mode second-level tables with A/D bits.
 */
export function vtdEcapReg(iommu: SimIommu): bigint {
  return iommu.dirtyTracking ? BASE_ECAP | ECAP_SMTS | ECAP_SLTS | ECAP_SLADS : BASE_ECAP;
}

/** intel_iommu_hw_info: the driver always reports the SPR17 erratum flag. */
export function vtdHwInfo(iommu: SimIommu): { type: number; data: Uint8Array } {
  return {
    type: IOMMU_HW_INFO_TYPE_INTEL_VTD,
    data: iommu_hw_info_vtd.encode({
      flags: IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17, cap_reg: vtdCapReg(iommu), ecap_reg: vtdEcapReg(iommu),
    }),
  };
}
