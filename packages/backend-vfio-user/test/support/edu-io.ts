// Driving the served edu through a vfio-user client's device I/O, as its guest driver would.

import { VFIO_PCI_BAR0_REGION_INDEX } from '@vmmkit/core/uapi';
import { EDU_DMA_CMD, EDU_DMA_COUNT, EDU_DMA_DST, EDU_DMA_SRC } from '@vmmkit/sim';
import type { VfioUserDeviceIo } from '@vmmkit/backend-vfio-user';

/** `v` as 8 little-endian bytes (a BAR write of a 64-bit register). */
export const le64 = (v: bigint): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
};

/** One edu DMA of 4 bytes from `src` to `dst` with command `cmd`, then a read of the command register (it stands for edu's timer). */
export async function runEduDma(io: VfioUserDeviceIo, src: bigint, dst: bigint, cmd: number): Promise<void> {
  await io.regionWrite(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_DMA_SRC), le64(src));
  await io.regionWrite(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_DMA_DST), le64(dst));
  await io.regionWrite(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_DMA_COUNT), le64(4n));
  await io.regionWrite(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_DMA_CMD), le64(BigInt(cmd)));
  await io.regionRead(VFIO_PCI_BAR0_REGION_INDEX, BigInt(EDU_DMA_CMD), 4);
}
