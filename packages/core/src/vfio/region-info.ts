// VFIO_DEVICE_GET_REGION_INFO with its capability chain (QEMU's vfio_get_region_info): where a
// region is in the device fd, what may be done with it, and which parts may be mmapped.

import type { HostKernel } from '../host/host-kernel.js';
import {
  VFIO_DEVICE_GET_REGION_INFO, VFIO_REGION_INFO_CAP_SPARSE_MMAP, VFIO_REGION_INFO_CAP_TYPE, VFIO_REGION_INFO_FLAG_CAPS,
  vfio_info_cap_header, vfio_region_info, vfio_region_info_cap_sparse_mmap, vfio_region_info_cap_type,
} from '../uapi/vfio.js';
import { vfioCall } from './vfio-call.js';

/** A region of a VFIO device fd. */
export interface VfioRegionInfo {
  readonly index: number;
  readonly flags: number;
  readonly size: bigint;
  /** Where the region starts in the device fd (for pread/pwrite/mmap), or in `mmapFd` for mmap. */
  readonly offset: bigint;
  /**
   * The file to mmap the region's mappable parts from, at `offset` + the area's offset (set by
   * `VfioDeviceIo.regionInfo` when the region may be mmapped): the device fd, or a vfio-user
   * server's file. It belongs to the device's I/O; a caller never closes it.
   */
  readonly mmapFd?: number;
  /** The parts that may be mmapped, when the kernel says only parts may (sparse mmap capability). */
  readonly sparseAreas?: readonly { readonly offset: bigint; readonly size: bigint }[];
  /** A device-specific region's type and subtype (VFIO_REGION_INFO_CAP_TYPE). */
  readonly type?: { readonly type: number; readonly subtype: number };
}

/** Read region `index`, growing the buffer until its capabilities fit. Throws VfioError. */
export function getRegionInfo(host: HostKernel, fd: number, index: number, device: string): VfioRegionInfo {
  let buf = vfio_region_info.encode({ index });
  for (;;) {
    vfioCall(`get the info of region ${index}`, device, () => host.ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, buf));
    const argsz = vfio_region_info.get(buf, 'argsz');
    if (argsz <= buf.byteLength) break;
    buf = new Uint8Array(argsz);
    vfio_region_info.set(buf, 'argsz', argsz);
    vfio_region_info.set(buf, 'index', index);
  }
  const info = vfio_region_info.decode(buf);
  const out: { -readonly [K in keyof VfioRegionInfo]: VfioRegionInfo[K] } = { index, flags: info.flags, size: info.size, offset: info.offset };
  if (info.flags & VFIO_REGION_INFO_FLAG_CAPS && info.cap_offset) {
    for (let at = info.cap_offset, hops = 0; at !== 0 && hops < 64 && at + 8 <= buf.byteLength; hops++) {
      const header = vfio_info_cap_header.decode(buf, at);
      if (header.id === VFIO_REGION_INFO_CAP_SPARSE_MMAP) {
        const n = vfio_region_info_cap_sparse_mmap.get(buf, 'nr_areas', at);
        out.sparseAreas = vfio_region_info_cap_sparse_mmap.readFlex(buf, n, at).map((a) => ({ offset: a.offset, size: a.size }));
      } else if (header.id === VFIO_REGION_INFO_CAP_TYPE) {
        const t = vfio_region_info_cap_type.decode(buf, at);
        out.type = { type: t.type, subtype: t.subtype };
      }
      at = header.next;
    }
  }
  return out;
}
