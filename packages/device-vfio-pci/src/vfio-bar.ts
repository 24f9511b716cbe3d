// A BAR of a vfio-pci device (QEMU's VFIORegion): its region in the device fd, mmapped where the
// kernel allows (whole, or sparse areas), reached by pread/pwrite elsewhere.

import { VfioError, vfioCall, type HostKernel, type HostMapping, type VfioRegionInfo } from '@vmmkit/core';
import {
  MAP_SHARED, PROT_READ, PROT_WRITE, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
} from '@vmmkit/core/uapi';

/** A mapped part of a BAR. */
interface MappedArea {
  readonly offset: number;
  readonly size: number;
  readonly mapping: HostMapping;
}

export type AccessSize = 1 | 2 | 4 | 8;

export class VfioBar {
  readonly #areas: MappedArea[] = [];

  private constructor(
    private readonly host: HostKernel,
    private readonly fd: number,
    readonly device: string,
    readonly info: VfioRegionInfo,
  ) {}

  /** Set up BAR access, mmapping what may be mmapped. Unmaps what it mapped if a later mmap fails. */
  static open(host: HostKernel, fd: number, device: string, info: VfioRegionInfo): VfioBar {
    const bar = new VfioBar(host, fd, device, info);
    if (!(info.flags & VFIO_REGION_INFO_FLAG_MMAP)) return bar;
    const areas = info.sparseAreas ?? [{ offset: 0n, size: info.size }];
    const prot = (info.flags & VFIO_REGION_INFO_FLAG_READ ? PROT_READ : 0) | (info.flags & VFIO_REGION_INFO_FLAG_WRITE ? PROT_WRITE : 0);
    try {
      for (const a of areas) {
        if (a.size === 0n) continue;
        const mapping = vfioCall(`mmap BAR${info.index} at 0x${a.offset.toString(16)} (+0x${a.size.toString(16)})`, device, () =>
          host.mmap(Number(a.size), prot, MAP_SHARED, fd, info.offset + a.offset),
        );
        bar.#areas.push({ offset: Number(a.offset), size: Number(a.size), mapping });
      }
    } catch (e) {
      bar.close();
      throw e;
    }
    return bar;
  }

  get index(): number {
    return this.info.index;
  }

  get size(): bigint {
    return this.info.size;
  }

  /** The mmapped parts of the BAR (empty when it is reached through read/write only). */
  get mmapped(): readonly { readonly offset: number; readonly size: number }[] {
    return this.#areas.map(({ offset, size }) => ({ offset, size }));
  }

  /** Read `size` bytes at `offset`, little-endian: from the mapping where mapped, else by pread. */
  read(offset: number, size: AccessSize): bigint {
    this.#check(offset, size);
    const area = this.#area(offset, size);
    const bytes = area ? area.mapping.view(offset - area.offset, size).slice() : this.#pread(offset, size);
    const out = new Uint8Array(8);
    out.set(bytes);
    return new DataView(out.buffer).getBigUint64(0, true);
  }

  /** Write `size` bytes at `offset`, little-endian: to the mapping where mapped, else by pwrite. */
  write(offset: number, size: AccessSize, value: bigint): void {
    this.#check(offset, size);
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, value, true);
    const area = this.#area(offset, size);
    if (area) area.mapping.view(offset - area.offset, size).set(bytes.subarray(0, size));
    else this.#pwrite(offset, bytes.subarray(0, size));
  }

  /** Unmap the BAR's mappings. */
  close(): void {
    for (const a of this.#areas.splice(0)) a.mapping.unmap();
  }

  #area(offset: number, size: number): MappedArea | undefined {
    return this.#areas.find((a) => offset >= a.offset && offset + size <= a.offset + a.size);
  }

  #check(offset: number, size: number): void {
    if (!Number.isInteger(offset) || offset < 0 || BigInt(offset + size) > this.info.size) {
      throw new VfioError(`access BAR${this.index} at 0x${offset.toString(16)}`, this.device, {
        detail: `${size} bytes at 0x${offset.toString(16)} are outside the BAR of 0x${this.info.size.toString(16)} bytes`,
      });
    }
  }

  #pread(offset: number, size: number): Uint8Array {
    const buf = new Uint8Array(size);
    const n = vfioCall(`read BAR${this.index} at 0x${offset.toString(16)}`, this.device, () =>
      this.host.pread(this.fd, buf, this.info.offset + BigInt(offset)),
    );
    if (n !== size) throw new VfioError(`read BAR${this.index} at 0x${offset.toString(16)}`, this.device, { detail: `read ${n} of ${size} bytes` });
    return buf;
  }

  #pwrite(offset: number, bytes: Uint8Array): void {
    const n = vfioCall(`write BAR${this.index} at 0x${offset.toString(16)}`, this.device, () =>
      this.host.pwrite(this.fd, bytes, this.info.offset + BigInt(offset)),
    );
    if (n !== bytes.byteLength) {
      throw new VfioError(`write BAR${this.index} at 0x${offset.toString(16)}`, this.device, { detail: `wrote ${n} of ${bytes.byteLength} bytes` });
    }
  }
}
