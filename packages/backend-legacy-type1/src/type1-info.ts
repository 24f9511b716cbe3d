// VFIO_IOMMU_GET_INFO of a type1 container and its capability chain (QEMU's
// vfio_get_iommu_info and the vfio_get_info_* readers).

import { vfioCall, type HostKernel, type IovaRange } from '@vmmkit/core';
import {
  VFIO_IOMMU_GET_INFO, VFIO_IOMMU_INFO_CAPS, VFIO_IOMMU_INFO_PGSIZES, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
  VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, vfio_info_cap_header, vfio_iommu_type1_info,
  vfio_iommu_type1_info_cap_iova_range, vfio_iommu_type1_info_cap_migration, vfio_iommu_type1_info_dma_avail,
} from '@vmmkit/core/uapi';

/** What a type1 container reports about itself. */
export interface Type1Info {
  /** Supported IOMMU page sizes, when reported. */
  readonly pgsizes?: bigint;
  /** The IOVA ranges, when the IOVA_RANGE capability is present. */
  readonly iovaRanges?: readonly IovaRange[];
  /** The MIGRATION capability: dirty page tracking support. */
  readonly migration?: { readonly pgsizeBitmap: bigint; readonly maxDirtyBitmapSize: bigint };
  /** How many more DMA mappings the container allows (DMA_AVAIL). */
  readonly dmaAvail?: number;
}

/** Read GET_INFO, growing the buffer until the capability chain fits (the kernel reports argsz). */
export function getType1Info(host: HostKernel, fd: number): Type1Info {
  let buf = vfio_iommu_type1_info.encode();
  for (;;) {
    vfioCall('get VFIO IOMMU info', undefined, () => host.ioctl(fd, VFIO_IOMMU_GET_INFO, buf));
    const argsz = vfio_iommu_type1_info.get(buf, 'argsz');
    if (argsz <= buf.byteLength) break;
    buf = new Uint8Array(argsz);
    vfio_iommu_type1_info.set(buf, 'argsz', argsz);
  }
  const info = vfio_iommu_type1_info.decode(buf);
  const caps = info.flags & VFIO_IOMMU_INFO_CAPS ? readCaps(buf, info.cap_offset) : new Map<number, number>();
  const iova = caps.get(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
  const migration = caps.get(VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION);
  const dmaAvail = caps.get(VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL);
  return {
    pgsizes: info.flags & VFIO_IOMMU_INFO_PGSIZES ? info.iova_pgsizes : undefined,
    iovaRanges: iova === undefined ? undefined : readIovaRanges(buf, iova),
    migration: migration === undefined ? undefined : readMigration(buf, migration),
    dmaAvail: dmaAvail === undefined ? undefined : vfio_iommu_type1_info_dma_avail.get(buf, 'avail', dmaAvail),
  };
}

/** Capability offsets by id, following the `next` links from `first` (offsets from the struct start). */
function readCaps(buf: Uint8Array, first: number): Map<number, number> {
  const caps = new Map<number, number>();
  for (let at = first, hops = 0; at !== 0 && hops < 64; hops++) {
    if (at + vfio_info_cap_header.size > buf.byteLength) break;
    const header = vfio_info_cap_header.decode(buf, at);
    if (!caps.has(header.id)) caps.set(header.id, at);
    at = header.next;
  }
  return caps;
}

function readIovaRanges(buf: Uint8Array, at: number): IovaRange[] {
  const count = vfio_iommu_type1_info_cap_iova_range.get(buf, 'nr_iovas', at);
  return vfio_iommu_type1_info_cap_iova_range.readFlex(buf, count, at).map((r) => ({ start: r.start, last: r.end }));
}

function readMigration(buf: Uint8Array, at: number): Type1Info['migration'] {
  const cap = vfio_iommu_type1_info_cap_migration.decode(buf, at);
  return { pgsizeBitmap: cap.pgsize_bitmap, maxDirtyBitmapSize: cap.max_dirty_bitmap_size };
}
