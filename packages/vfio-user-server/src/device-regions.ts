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
      const dv = new DataView(out.buffer);
      this.#split(at, count, (o, size, done) => writeLe(dv, done, size, this.model.barRead(index, o, size)));
    }
    return out;
  }

  /** REGION_WRITE: `data` at `offset` of region `index`. */
  write(index: number, offset: bigint, data: Uint8Array): void {
    const at = this.#check(index, offset, data.byteLength);
    if (index === VFIO_PCI_CONFIG_REGION_INDEX) return this.config.write(at, data);
    const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    this.#split(at, data.byteLength, (o, size, done) => this.model.barWrite(index, o, size, readLe(dv, done, size)));
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

  /** Split an access into naturally aligned 8/4/2/1-byte accesses, as a CPU would issue them. */
  #split(offset: number, count: number, access: (offset: number, size: 1 | 2 | 4 | 8, done: number) => void): void {
    let done = 0;
    while (done < count) {
      const at = offset + done;
      const left = count - done;
      const size = ([8, 4, 2, 1] as const).find((s) => s <= left && at % s === 0)!;
      access(at, size, done);
      done += size;
    }
  }
}

function writeLe(dv: DataView, at: number, size: number, value: bigint): void {
  for (let i = 0; i < size; i++) dv.setUint8(at + i, Number((value >> BigInt(8 * i)) & 0xffn));
}

function readLe(dv: DataView, at: number, size: number): bigint {
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(dv.getUint8(at + i));
  return v;
}
