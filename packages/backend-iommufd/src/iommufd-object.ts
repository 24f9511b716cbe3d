// The `iommufd` object (QEMU's backends/iommufd.c): one /dev/iommu fd shared by every device
// that names it, opened on first use and closed after the last (or passed in with fd=), and
// the iommufd ioctls the backend makes through it.

import {
  HostError, VfioError, vfioCall, vfioClose, withKernelBuffer, type HostKernel, type IovaRange, type VmmObject,
} from '@vmmkit/core';
import {
  IOMMU_DESTROY, IOMMU_GET_HW_INFO, IOMMU_HWPT_ALLOC, IOMMU_HWPT_DATA_NONE, IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
  IOMMU_HWPT_GET_DIRTY_BITMAP, IOMMU_HWPT_SET_DIRTY_TRACKING, IOMMU_IOAS_ALLOC, IOMMU_IOAS_IOVA_RANGES,
  IOMMU_IOAS_MAP, IOMMU_IOAS_MAP_FIXED_IOVA, IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE, IOMMU_IOAS_UNMAP,
  O_CLOEXEC, O_RDWR, iommu_destroy, iommu_hw_info, iommu_hwpt_alloc, iommu_hwpt_get_dirty_bitmap,
  iommu_hwpt_set_dirty_tracking, iommu_ioas_alloc, iommu_ioas_iova_ranges, iommu_ioas_map, iommu_ioas_unmap,
  iommu_iova_range,
} from '@vmmkit/core/uapi';

export class IommufdObject implements VmmObject {
  readonly type = 'iommufd';
  #fd: number;
  #users = 0;
  /** Opened by vmmkit (closed after its last user), rather than passed in with fd=. */
  readonly #owned: boolean;

  constructor(
    readonly id: string,
    private readonly host: HostKernel,
    fd?: number,
  ) {
    this.#owned = fd === undefined;
    this.#fd = fd ?? -1;
  }

  /** The /dev/iommu fd; -1 while no device is connected to an owned one. */
  get fd(): number {
    return this.#fd;
  }

  get users(): number {
    return this.#users;
  }

  /** A device starts using the object: open /dev/iommu for the first one (iommufd_backend_connect). */
  connect(): void {
    if (this.#owned && this.#users === 0) {
      this.#fd = vfioCall(`open /dev/iommu for iommufd object '${this.id}'`, undefined, () => this.host.open('/dev/iommu', O_RDWR | O_CLOEXEC));
    }
    this.#users++;
  }

  /** A device stops using the object: the last one closes an owned fd. */
  disconnect(): void {
    if (this.#users === 0) return;
    this.#users--;
    if (this.#users === 0 && this.#owned) {
      vfioClose(this.host, this.#fd, `/dev/iommu of iommufd object '${this.id}'`);
      this.#fd = -1;
    }
  }

  busyReason(): string | undefined {
    return this.#users > 0 ? `${this.#users} device(s) use it` : undefined;
  }

  close(): void {
    // A passed-in fd belongs to whoever passed it; an owned one is closed with its last user.
  }

  allocIoas(): number {
    const arg = iommu_ioas_alloc.encode();
    this.#call('allocate an IOAS', () => this.host.ioctl(this.#fd, IOMMU_IOAS_ALLOC, arg));
    return iommu_ioas_alloc.get(arg, 'out_ioas_id');
  }

  /** IOMMU_DESTROY of an IOAS or HWPT. */
  freeId(id: number): void {
    this.#call(`free object ${id}`, () => this.host.ioctl(this.#fd, IOMMU_DESTROY, iommu_destroy.encode({ id })));
  }

  mapDma(ioasId: number, iova: bigint, length: bigint, userVa: bigint, readonly: boolean): void {
    const flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | (readonly ? 0 : IOMMU_IOAS_MAP_WRITEABLE);
    this.#call(`map IOVA 0x${iova.toString(16)} (+0x${length.toString(16)}) in IOAS ${ioasId}`, () =>
      this.host.ioctl(this.#fd, IOMMU_IOAS_MAP, iommu_ioas_map.encode({ flags, ioas_id: ioasId, user_va: userVa, length, iova })),
    );
  }

  unmapDma(ioasId: number, iova: bigint, length: bigint): void {
    try {
      this.host.ioctl(this.#fd, IOMMU_IOAS_UNMAP, iommu_ioas_unmap.encode({ ioas_id: ioasId, iova, length }));
    } catch (e) {
      // iommufd treats a mapping as an object, so unmapping nothing is ENOENT, where type1
      // succeeds. Guest IOMMUs issue redundant unmaps; treat them as legacy does.
      if (HostError.is(e, 'ENOENT')) return;
      throw new VfioError(`unmap IOVA 0x${iova.toString(16)} (+0x${length.toString(16)}) in IOAS ${ioasId}`, undefined, { cause: e });
    }
  }

  /** The IOAS's allowed IOVA ranges and alignment, growing the array as the kernel asks (EMSGSIZE). */
  async iovaRanges(ioasId: number): Promise<{ ranges: IovaRange[]; alignment: bigint }> {
    let room = 4;
    for (;;) {
      const table = new Uint8Array(room * iommu_iova_range.size);
      try {
        return await withKernelBuffer(this.host, table, (addr) => {
          const arg = iommu_ioas_iova_ranges.encode({ ioas_id: ioasId, num_iovas: room, allowed_iovas: addr });
          this.host.ioctl(this.#fd, IOMMU_IOAS_IOVA_RANGES, arg);
          const out = iommu_ioas_iova_ranges.decode(arg);
          const ranges = Array.from({ length: out.num_iovas }, (_, i) => iommu_iova_range.decode(table, i * iommu_iova_range.size));
          return { ranges: ranges.map((r) => ({ start: r.start, last: r.last })), alignment: out.out_iova_alignment };
        });
      } catch (e) {
        if (HostError.is(e, 'EMSGSIZE') && room < 4096) {
          room *= 4;
          continue;
        }
        throw new VfioError(`get the IOVA ranges of IOAS ${ioasId}`, undefined, { cause: e });
      }
    }
  }

  /** IOMMU_GET_HW_INFO of a bound device: its IOMMU's type and capabilities. */
  getDeviceInfo(devid: number, device: string): { type: number; capabilities: bigint } {
    const arg = iommu_hw_info.encode({ dev_id: devid });
    vfioCall('get the IOMMU info of the device', device, () => this.host.ioctl(this.#fd, IOMMU_GET_HW_INFO, arg));
    const info = iommu_hw_info.decode(arg);
    return { type: info.out_data_type, capabilities: info.out_capabilities };
  }

  /** IOMMU_HWPT_ALLOC of a paging HWPT on `ptId` for the device `devid`. */
  allocHwpt(devid: number, ptId: number, flags: number, device: string): number {
    const arg = iommu_hwpt_alloc.encode({ flags, dev_id: devid, pt_id: ptId, data_type: IOMMU_HWPT_DATA_NONE });
    vfioCall(`allocate a HWPT (flags 0x${flags.toString(16)}) on IOAS ${ptId}`, device, () => this.host.ioctl(this.#fd, IOMMU_HWPT_ALLOC, arg));
    return iommu_hwpt_alloc.get(arg, 'out_hwpt_id');
  }

  setDirtyTracking(hwptId: number, start: boolean): void {
    const flags = start ? IOMMU_HWPT_DIRTY_TRACKING_ENABLE : 0;
    this.#call(`${start ? 'start' : 'stop'} dirty tracking of HWPT ${hwptId}`, () =>
      this.host.ioctl(this.#fd, IOMMU_HWPT_SET_DIRTY_TRACKING, iommu_hwpt_set_dirty_tracking.encode({ flags, hwpt_id: hwptId })),
    );
  }

  /** OR the HWPT's dirty bits for [iova, iova + length) into `bytes` (bit 0 = iova). */
  async getDirtyBitmap(hwptId: number, iova: bigint, length: bigint, pageSize: bigint, bytes: Uint8Array, flags: number): Promise<void> {
    await withKernelBuffer(this.host, bytes, (data) =>
      this.#call(`get the dirty bitmap of HWPT ${hwptId} at IOVA 0x${iova.toString(16)} (+0x${length.toString(16)})`, () =>
        this.host.ioctl(this.#fd, IOMMU_HWPT_GET_DIRTY_BITMAP,
          iommu_hwpt_get_dirty_bitmap.encode({ hwpt_id: hwptId, flags, iova, length, page_size: pageSize, data })),
      ),
    );
  }

  #call<T>(step: string, call: () => T): T {
    return vfioCall(`${step} (iommufd object '${this.id}')`, undefined, call);
  }
}
