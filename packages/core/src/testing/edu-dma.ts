// Driving QEMU's edu device's DMA engine through BAR0 (hw/misc/edu.c), the same way on a real
// edu in a guest, on SimHost's edu model and on an edu a vfio-user server serves, through the
// device's I/O: copy into its 4 KiB buffer, then have it DMA out.

import { ArgumentError, VfioError } from '../errors/vmm-error.js';
import { setBusMasterThrough } from '../vfio/pci-config.js';
import type { VfioDeviceIo } from '../vfio/vfio-device-io.js';
import { VFIO_PCI_BAR0_REGION_INDEX } from '../uapi/vfio.js';

export const EDU_DMA_SRC = 0x80;
export const EDU_DMA_DST = 0x88;
export const EDU_DMA_COUNT = 0x90;
export const EDU_DMA_CMD = 0x98;
export const EDU_DMA_START = 0x1;
/** Direction bit: from the edu buffer to RAM. */
export const EDU_DMA_FROM_DEVICE = 0x2;
/** The edu's internal DMA buffer, in its own address space. */
export const EDU_DMA_BUFFER = 0x40000n;
/** QEMU 7.2's edu aborts on a transfer ending exactly at the end of its 4 KiB buffer: stay below. */
export const EDU_DMA_MAX = 4095;

/** A 32-bit register write: what realhost's probe used on QEMU 7.2's edu (it zero-extends addresses). */
async function write32(io: VfioDeviceIo, name: string, at: number, value: bigint): Promise<void> {
  if (value > 0xffff_ffffn) throw new ArgumentError(`${name}: edu register value 0x${value.toString(16)} does not fit 32 bits`);
  const buf = new Uint8Array(4);
  new DataView(buf.buffer).setUint32(0, Number(value), true);
  await io.regionWrite(VFIO_PCI_BAR0_REGION_INDEX, BigInt(at), buf);
}

/** Poll the command register until the engine is idle (QEMU's edu takes ~100 ms per transfer). */
async function waitIdle(io: VfioDeviceIo, name: string): Promise<void> {
  for (let tries = 0; tries < 2000; tries++) {
    const buf = await io.regionRead(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_DMA_CMD), 4);
    if (!(buf[0]! & EDU_DMA_START)) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new VfioError('complete an edu DMA', name, { errno: 'ETIMEDOUT', detail: 'the DMA engine did not finish' });
}

/** A page the device can read: where data is staged for the edu to copy in. */
export interface EduStaging {
  readonly iova: bigint;
  readonly bytes: Uint8Array;
}

async function transfer(io: VfioDeviceIo, name: string, src: bigint, dst: bigint, count: number, toRam: boolean): Promise<void> {
  await write32(io, name, EDU_DMA_SRC, src);
  await write32(io, name, EDU_DMA_DST, dst);
  await write32(io, name, EDU_DMA_COUNT, BigInt(count));
  await write32(io, name, EDU_DMA_CMD, BigInt(EDU_DMA_START | (toRam ? EDU_DMA_FROM_DEVICE : 0)));
  await waitIdle(io, name);
}

/**
 * Make an edu device write `data` (at most 4095 bytes) at `iova` by DMA, through the device's
 * I/O (so on any backend): the data is staged in `staging` (mapped for the device), copied into
 * the edu's buffer, and copied out to `iova`. Bus Master Enable is turned on first (vfio-pci
 * clears it on open). edu reports no IOMMU faults: whether the write landed is for the caller
 * to see in memory.
 */
export async function eduDmaWrite(io: VfioDeviceIo, name: string, iova: bigint, data: Uint8Array, staging: EduStaging): Promise<void> {
  if (data.byteLength > EDU_DMA_MAX || data.byteLength > staging.bytes.byteLength) {
    throw new ArgumentError(`edu DMA of ${data.byteLength} bytes: at most ${Math.min(EDU_DMA_MAX, staging.bytes.byteLength)}`);
  }
  await setBusMasterThrough(io, true);
  staging.bytes.set(data);
  await transfer(io, name, staging.iova, EDU_DMA_BUFFER, data.byteLength, false);
  await transfer(io, name, EDU_DMA_BUFFER, iova, data.byteLength, true);
}
