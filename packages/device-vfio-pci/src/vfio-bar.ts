// A BAR of a vfio-pci device (QEMU's VFIORegion): mmapped where the device allows (whole, or
// sparse areas) from the file its I/O names, reached through the device's I/O elsewhere
// (pread/pwrite on the device fd, or vfio-user REGION_READ/WRITE messages).

import {
  InvariantError, VfioError, vfioCall, type HostKernel, type HostMapping, type PciBarMemory, type VfioDeviceIo, type VfioRegionInfo,
} from '@vmmkit/core';
import {
  MAP_SHARED, PROT_READ, PROT_WRITE, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
} from '@vmmkit/core/uapi';

/** A mapped part of a BAR. */
interface MappedArea {
  readonly offset: number;
  readonly size: number;
  readonly mapping: HostMapping;
  /** The mapping as lent to others (an accelerator's memslot): everything but `unmap`. */
  readonly lent: HostMapping;
}

/** A byte range of a BAR that must keep trapping (the MSI-X table or PBA the device emulates). */
export interface TrappedRange {
  readonly offset: number;
  readonly size: number;
}

export type AccessSize = 1 | 2 | 4 | 8;

export class VfioBar {
  readonly #areas: MappedArea[] = [];

  private constructor(
    private readonly io: VfioDeviceIo,
    readonly device: string,
    readonly info: VfioRegionInfo,
  ) {}

  /**
   * Set up BAR access, mmapping what may be mmapped from `info.mmapFd` (which stays the I/O's:
   * the mappings hold the file, the fd is never closed here). Unmaps what it mapped if a later
   * mmap fails.
   */
  static open(host: HostKernel, io: VfioDeviceIo, device: string, info: VfioRegionInfo): VfioBar {
    const bar = new VfioBar(io, device, info);
    const fd = info.mmapFd;
    if (!(info.flags & VFIO_REGION_INFO_FLAG_MMAP) || fd === undefined) return bar;
    const areas = info.sparseAreas ?? [{ offset: 0n, size: info.size }];
    const prot = (info.flags & VFIO_REGION_INFO_FLAG_READ ? PROT_READ : 0) | (info.flags & VFIO_REGION_INFO_FLAG_WRITE ? PROT_WRITE : 0);
    try {
      for (const a of areas) {
        if (a.size === 0n) continue;
        const mapping = vfioCall(`mmap BAR${info.index} at 0x${a.offset.toString(16)} (+0x${a.size.toString(16)})`, device, () =>
          host.mmap(Number(a.size), prot, MAP_SHARED, fd, info.offset + a.offset),
        );
        bar.#areas.push({ offset: Number(a.offset), size: Number(a.size), mapping, lent: lend(mapping, `BAR${info.index} of ${device}`) });
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

  /**
   * The mmapped parts of the BAR as memory others may map (PciFunction.barMemory), leaving out
   * every part that overlaps a `trapped` range (those must keep reaching the device's emulation).
   * The mappings stay the BAR's: unmapping one through this list throws; they go at `close`.
   */
  memory(trapped: readonly TrappedRange[] = []): readonly PciBarMemory[] {
    return this.#areas
      .filter((a) => !trapped.some((t) => t.size > 0 && t.offset < a.offset + a.size && t.offset + t.size > a.offset))
      .map((a) => ({ offset: BigInt(a.offset), size: BigInt(a.size), mapping: a.lent }));
  }

  /** Read `size` bytes at `offset`, little-endian: from the mapping where mapped, else through the I/O. */
  async read(offset: number, size: AccessSize): Promise<bigint> {
    this.#check(offset, size);
    const area = this.#area(offset, size);
    const bytes = area ? area.mapping.view(offset - area.offset, size).slice() : await this.#regionRead(offset, size);
    const out = new Uint8Array(8);
    out.set(bytes);
    return new DataView(out.buffer).getBigUint64(0, true);
  }

  /** Write `size` bytes at `offset`, little-endian: to the mapping where mapped, else through the I/O. */
  async write(offset: number, size: AccessSize, value: bigint): Promise<void> {
    this.#check(offset, size);
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, value, true);
    const area = this.#area(offset, size);
    if (area) area.mapping.view(offset - area.offset, size).set(bytes.subarray(0, size));
    else await this.#regionWrite(offset, bytes.subarray(0, size));
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

  // The I/O's errors name the device, the region and the offset.
  #regionRead(offset: number, size: number): Promise<Uint8Array> {
    return this.io.regionRead(this.index, BigInt(offset), size);
  }

  #regionWrite(offset: number, bytes: Uint8Array): Promise<void> {
    // A BAR write is a PCI memory write: posted (a vfio-user device may take it without a reply).
    return this.io.regionWrite(this.index, BigInt(offset), bytes, { posted: true });
  }
}

/** `mapping` for someone who may use it but not unmap it (its owner does, at close). */
function lend(mapping: HostMapping, what: string): HostMapping {
  return {
    addr: mapping.addr,
    length: mapping.length,
    processAddress: mapping.processAddress,
    get bytes() { return mapping.bytes; },
    view: (offset, length) => mapping.view(offset, length),
    unmap: () => {
      throw new InvariantError(`the mapping of ${what} is the device's: it is unmapped when the device is unrealized`);
    },
  };
}
