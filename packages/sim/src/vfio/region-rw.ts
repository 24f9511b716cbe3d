// Reads and writes of a device fd's regions (vfio_pci_rw, vfio_pci_bar_rw and
// vfio_pci_core_do_io_rw): config space through its virtualization, BAR registers in aligned
// accesses of 8, 4, 2 or 1 bytes routed to the model, and the MSI-X table kept from the user.

import {
  VFIO_PCI_BAR5_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_NUM_REGIONS, VFIO_PCI_ROM_REGION_INDEX,
  VFIO_PCI_VGA_REGION_INDEX, PCI_CAP_ID_MSIX, PCI_MSIX_ENTRY_SIZE, PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_QSIZE,
  PCI_MSIX_TABLE, findCapability,
} from '@vmmkit/core/uapi';
import type { SimPciModel } from '../devices/pci-model.js';
import { fail } from '../kernel/sim-errno.js';
import { VFIO_PCI_OFFSET_MASK, VFIO_PCI_OFFSET_SHIFT, type VfioPciCore } from './device-core.js';

/** pread (write = false) or pwrite of `buf` at device fd offset `offset`. Returns the bytes done. */
export function regionAccess(core: VfioPciCore, buf: Uint8Array, offset: bigint, write: boolean): number {
  if (buf.byteLength === 0) return 0; // vfio_pci_core_read/write return before looking at the offset
  const index = offset >> VFIO_PCI_OFFSET_SHIFT;
  if (index >= BigInt(VFIO_PCI_NUM_REGIONS)) fail('EINVAL', `region index ${index} >= ${VFIO_PCI_NUM_REGIONS}`);
  const pos = offset & VFIO_PCI_OFFSET_MASK;
  switch (Number(index)) {
    case VFIO_PCI_CONFIG_REGION_INDEX:
      return core.config!.access(buf, Number(pos > 0xffff_ffffn ? 0xffff_ffffn : pos), write);
    case VFIO_PCI_ROM_REGION_INDEX:
      return fail('EINVAL', write ? 'the ROM region is read-only' : 'the device has no ROM');
    case VFIO_PCI_VGA_REGION_INDEX:
      return fail('EINVAL', 'the device has no VGA region');
    default:
      if (index > BigInt(VFIO_PCI_BAR5_REGION_INDEX)) return fail('EINVAL');
      return barAccess(core, Number(index), buf, pos, write);
  }
}

function barAccess(core: VfioPciCore, index: number, buf: Uint8Array, pos: bigint, write: boolean): number {
  const model = core.device.model;
  const bar = model.bars.find((b) => b.index === index);
  if (!bar || bar.size === 0n) fail('EINVAL', `BAR${index} is not implemented`);
  if (pos >= bar.size) fail('EINVAL', `offset 0x${pos.toString(16)} is past the end of BAR${index}`);
  const count = Number(bar.size - pos < BigInt(buf.byteLength) ? bar.size - pos : BigInt(buf.byteLength));
  const [xStart, xEnd] = msixWindow(model, index);
  const memory = bar.type !== 'io';
  let off = Number(pos);
  let done = 0;
  while (done < count) {
    const left = count - done;
    const fillable = off < xStart ? Math.min(left, xStart - off) : off >= xEnd ? left : 0;
    if (fillable === 0) {
      // The MSI-X table belongs to the host: reads see all ones, writes are dropped.
      const n = Math.min(left, xEnd - off);
      if (!write) buf.fill(0xff, done, done + n);
      done += n;
      off += n;
      continue;
    }
    const size = fillable >= 8 && off % 8 === 0 ? 8 : fillable >= 4 && off % 4 === 0 ? 4 : fillable >= 2 && off % 2 === 0 ? 2 : 1;
    if (memory && !core.config!.memoryEnabled) fail('EIO', 'memory decoding is disabled in the command register');
    const chunk = buf.subarray(done, done + size);
    if (write) model.barWrite(index, off, size, readLe(chunk));
    else writeLe(chunk, model.barRead(index, off, size));
    done += size;
    off += size;
  }
  return done;
}

/** [start, end) of the MSI-X table inside BAR `index` (empty when it is elsewhere). */
function msixWindow(model: SimPciModel, index: number): [number, number] {
  const at = findCapability(model.config, PCI_CAP_ID_MSIX);
  if (!at) return [0, 0];
  const dv = new DataView(model.config.buffer, model.config.byteOffset);
  const table = dv.getUint32(at + PCI_MSIX_TABLE, true);
  if ((table & 7) !== index) return [0, 0];
  const start = table & ~7;
  return [start, start + ((dv.getUint16(at + PCI_MSIX_FLAGS, true) & PCI_MSIX_FLAGS_QSIZE) + 1) * PCI_MSIX_ENTRY_SIZE];
}

function readLe(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = bytes.byteLength - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]!);
  return v;
}

function writeLe(bytes: Uint8Array, value: bigint): void {
  for (let i = 0; i < bytes.byteLength; i++) {
    bytes[i] = Number((value >> BigInt(8 * i)) & 0xffn);
  }
}
