// The device's VFIO regions as a vfio-user client sees them: BARs 0-5 (through the model's
// register handlers, split into the accesses hardware takes), the absent ROM and VGA regions,
// and config space (index 7); with region info and the shared, mmappable parts of BARs.

import {
  VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_NUM_REGIONS, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
} from '@vmmkit/core/uapi';
import type { VfioUserRegionInfo } from '@vmmkit/core/vfio-user';
import type { SimBar, SimPciModel } from '@vmmkit/sim';
import type { ConfigSpace } from './config-space.js';
import { refuse } from './request-error.js';

/** A BAR shared with the client through a file: the fd it mmaps and where its areas start. */
export interface SharedBar {
  readonly fd: number;
  /** The file offset of the BAR's offset 0. */
  readonly fileOffset: bigint;
}

/** The regions of one device. */
export class DeviceRegions {
  constructor(
    private readonly model: SimPciModel,
    private readonly config: ConfigSpace,
    private readonly shared: ReadonlyMap<number, SharedBar>,
  ) {}

  /** num_regions of DEVICE_GET_INFO: the nine PCI regions. */
  get count(): number {
    return VFIO_PCI_NUM_REGIONS;
  }

  /** DEVICE_GET_REGION_INFO of `index`; EINVAL beyond the PCI regions. */
  info(index: number): { info: VfioUserRegionInfo; fd?: number } {
    if (index >= VFIO_PCI_NUM_REGIONS) refuse('EINVAL', `region ${index} does not exist (${VFIO_PCI_NUM_REGIONS} regions)`);
    const rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    if (index === VFIO_PCI_CONFIG_REGION_INDEX) return { info: { index, flags: rw, size: BigInt(this.config.size), mmapOffset: 0n } };
    const bar = this.#bar(index);
    if (!bar) return { info: { index, flags: 0, size: 0n, mmapOffset: 0n } };
    const shared = this.shared.get(index);
    if (!shared || !bar.mmapAreas?.length) return { info: { index, flags: rw, size: bar.size, mmapOffset: 0n } };
    const whole = bar.mmapAreas.length === 1 && bar.mmapAreas[0]!.offset === 0n && bar.mmapAreas[0]!.size === bar.size;
    return {
      info: {
        index, flags: rw | VFIO_REGION_INFO_FLAG_MMAP, size: bar.size, mmapOffset: shared.fileOffset,
        ...(whole ? {} : { sparse: bar.mmapAreas.map((a) => ({ offset: a.offset, size: a.size })) }),
      },
      fd: shared.fd,
    };
  }

  /** REGION_READ: `count` bytes at `offset` of region `index`. */
  read(index: number, offset: bigint, count: number): Uint8Array {
    const out = new Uint8Array(count);
    const at = this.#check(index, offset, count);
    if (index === VFIO_PCI_CONFIG_REGION_INDEX) this.config.read(at, out);
    else {
      // Split as a CPU would issue the accesses (loops, not callbacks: this runs per register read).
      for (let done = 0; done < count;) {
        const size = accessSize(at + done, count - done);
        writeLe(out, done, size, this.model.barRead(index, at + done, size));
        done += size;
      }
    }
    return out;
  }

  /** REGION_WRITE: `data` at `offset` of region `index`. */
  write(index: number, offset: bigint, data: Uint8Array): void {
    const at = this.#check(index, offset, data.byteLength);
    if (index === VFIO_PCI_CONFIG_REGION_INDEX) return this.config.write(at, data);
    for (let done = 0; done < data.byteLength;) {
      const size = accessSize(at + done, data.byteLength - done);
      this.model.barWrite(index, at + done, size, readLe(data, done, size));
      done += size;
    }
  }

  #bar(index: number): SimBar | undefined {
    return this.model.bars.find((b) => b.index === index);
  }

  /** EINVAL unless [offset, offset + count) lies in the region; returns the offset as a number. */
  #check(index: number, offset: bigint, count: number): number {
    const size = index === VFIO_PCI_CONFIG_REGION_INDEX ? BigInt(this.config.size) : (index < VFIO_PCI_NUM_REGIONS ? this.#bar(index)?.size : undefined);
    if (size === undefined) refuse('EINVAL', `region ${index} cannot be accessed`);
    if (count === 0 || offset + BigInt(count) > size) refuse('EINVAL', `[0x${offset.toString(16)}, +${count}) is outside region ${index} (${size} bytes)`);
    return Number(offset);
  }
}

/** The largest naturally aligned 8/4/2/1-byte access at `at` that `left` bytes allow. */
function accessSize(at: number, left: number): 1 | 2 | 4 | 8 {
  if (left >= 8 && at % 8 === 0) return 8;
  if (left >= 4 && at % 4 === 0) return 4;
  if (left >= 2 && at % 2 === 0) return 2;
  return 1;
}

// An off-heap 8-byte scratch: register values are bigints, moved through it without bigint arithmetic.
const scratch = new Uint8Array(new ArrayBuffer(8));
const scratchView = new DataView(scratch.buffer);

/** The low `size` bytes of `value`, little-endian, at `at` of `out`. */
function writeLe(out: Uint8Array, at: number, size: number, value: bigint): void {
  scratchView.setBigUint64(0, value, true);
  for (let i = 0; i < size; i++) out[at + i] = scratch[i]!;
}

/** `size` little-endian bytes at `at` of `data` as an unsigned value. */
function readLe(data: Uint8Array, at: number, size: number): bigint {
  scratch.fill(0);
  for (let i = 0; i < size; i++) scratch[i] = data[at + i]!;
  return scratchView.getBigUint64(0, true);
}
