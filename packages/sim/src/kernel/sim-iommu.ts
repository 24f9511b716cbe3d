// An IOMMU hardware unit of the simulated machine: its capabilities as GET_HW_INFO and the IO
// page tables it builds report them.

import { ConfigError } from '@vmmkit/core';
import type { SimIommuConfig } from '../config.js';

const X86_MSI_WINDOW = { start: 0xfee0_0000n, last: 0xfeef_ffffn };

export class SimIommu {
  readonly id: string;
  readonly dirtyTracking: boolean;
  readonly awBits: number;
  /** Supported IO page sizes (bitmap of sizes). */
  readonly pageSizes: bigint;
  /** IOVA ranges devices behind this unit can never use. */
  readonly reservedRegions: readonly { readonly start: bigint; readonly last: bigint }[];
  /** The addressable IOVA window [0, 2^awBits - 1]. */
  readonly aperture: { readonly start: bigint; readonly last: bigint };

  constructor(config: SimIommuConfig) {
    this.id = config.id;
    this.dirtyTracking = config.dirtyTracking ?? false;
    this.awBits = config.awBits ?? 48;
    if (!Number.isInteger(this.awBits) || this.awBits < 12 || this.awBits > 64) {
      throw new ConfigError(`SimHost: iommu '${this.id}' awBits must be 12..64, got ${config.awBits}`);
    }
    this.pageSizes = config.pageSizes ?? 0x4020_1000n;
    if (this.pageSizes <= 0n) throw new ConfigError(`SimHost: iommu '${this.id}' has no page size`);
    this.reservedRegions = config.reservedRegions ?? [X86_MSI_WINDOW];
    this.aperture = { start: 0n, last: (1n << BigInt(this.awBits)) - 1n };
  }

  /** The smallest supported IO page size. */
  get minPageSize(): bigint {
    return this.pageSizes & -this.pageSizes;
  }
}
