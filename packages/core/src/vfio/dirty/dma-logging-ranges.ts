// The IOVA ranges a container's devices log their DMA in (QEMU's vfio_dirty_tracking_init and
// vfio_device_feature_dma_logging_start_create): everything the container maps, collapsed into
// at most three ranges — 32-bit DMA, 64-bit DMA, and the PCI 64-bit hole — so that a device
// with few range trackers can cover it. Behind a guest IOMMU the whole IOVA space up to its
// max IOVA is tracked, as the guest may map anywhere in it during migration.

import type { MemorySection } from '../../memory/address-space.js';
import { pageRange } from '../../memory/page-range.js';
import type { DmaLoggingRange } from './dma-logging.js';

const U32_MAX = 0xffff_ffffn;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

/** A mapped IOVA range, inclusive, and whether it is another device's BAR (peer-to-peer). */
export interface TrackedRange {
  readonly iova: bigint;
  readonly last: bigint;
  readonly pciBar?: boolean;
}

/** Collapse mapped ranges into QEMU's three DMA logging ranges (empty ones left out). */
export function collapseDmaLoggingRanges(ranges: readonly TrackedRange[]): DmaLoggingRange[] {
  const bounds = {
    dma32: { min: U32_MAX, max: 0n },
    dma64: { min: U64_MAX, max: 0n },
    pci64: { min: U64_MAX, max: 0n },
  };
  for (const r of ranges) {
    // A range ending below 4 GiB is 32-bit DMA; the PCI hole holds peer BARs above 4 GiB.
    const b = r.pciBar && r.iova >= U32_MAX ? bounds.pci64 : r.last <= U32_MAX ? bounds.dma32 : bounds.dma64;
    if (r.iova < b.min) b.min = r.iova;
    if (r.last > b.max) b.max = r.last;
  }
  return [bounds.dma32, bounds.dma64, bounds.pci64]
    .filter((b) => b.max > 0n)
    .map((b) => ({ iova: b.min, length: b.max - b.min + 1n }));
}

/** The ranges devices log while migrating, for the sections of their address space (`pageSize`: its pages). */
export function dmaLoggingRanges(sections: readonly MemorySection[], pageSize: number): DmaLoggingRange[] {
  return collapseDmaLoggingRanges(sections.flatMap((s) => sectionRanges(s, pageSize)));
}

function sectionRanges(section: MemorySection, pageSize: number): TrackedRange[] {
  if (section.kind === 'iommu') {
    const max = section.region.attributes.maxIova;
    // No max IOVA: migration is blocked before tracking starts (VIOMMU_WITHOUT_BOUNDS).
    if (max === undefined) return [];
    const low = max < U32_MAX ? max : U32_MAX;
    return max > U32_MAX ? [{ iova: 0n, last: low }, { iova: U32_MAX + 1n, last: max }] : [{ iova: 0n, last: low }];
  }
  // Whole pages only, as the listener maps them (vfio_get_section_iova_range).
  const range = pageRange(section.start, section.size, pageSize);
  return range ? [{ iova: range.start, last: range.start + range.size - 1n }] : [];
}
