// mmap of a device fd (vfio_pci_core_mmap): shared mappings of BAR areas that allow it. The
// mapping keeps the file referenced, as a vma does, until it is unmapped.

import { InvariantError } from '@vmmkit/core';
import { MAP_SHARED, VFIO_PCI_ROM_REGION_INDEX } from '@vmmkit/core/uapi';
import { fail } from '../kernel/sim-errno.js';
import type { FileMapping, SimFile } from '../kernel/sim-file.js';
import { VFIO_PCI_OFFSET_MASK, VFIO_PCI_OFFSET_SHIFT, type VfioPciCore } from './device-core.js';
import { barMmapSupported } from './device-info.js';

const PAGE = 4096n;

/**
 * Map `length` bytes at device fd offset `offset`. Beyond vfio-pci's own checks (a shared
 * mapping of an mmap-capable BAR, inside its page-rounded size), the range must lie in one of
 * the BAR's mmap areas: the simulated mapping is plain memory, so registers with side effects
 * must stay reachable only through read/write.
 */
export function regionMmap(file: SimFile, core: VfioPciCore, length: number, flags: number, offset: bigint): FileMapping {
  const index = Number(offset >> VFIO_PCI_OFFSET_SHIFT);
  if ((flags & MAP_SHARED) === 0) fail('EINVAL', 'device regions can only be mapped MAP_SHARED');
  if (index >= VFIO_PCI_ROM_REGION_INDEX) fail('EINVAL', `region ${index} cannot be mapped`);
  const model = core.device.model;
  const bar = model.bars.find((b) => b.index === index);
  if (!barMmapSupported(bar)) fail('EINVAL', `BAR${index} does not support mmap`);
  const start = offset & VFIO_PCI_OFFSET_MASK;
  const end = start + BigInt(length);
  const physLength = ((bar.size + PAGE - 1n) / PAGE) * PAGE;
  if (end > physLength) fail('EINVAL', `[0x${start.toString(16)}, 0x${end.toString(16)}) is past the end of BAR${index}`);
  const inArea = bar.mmapAreas!.some((a) => start >= a.offset && end <= a.offset + ((a.size + PAGE - 1n) / PAGE) * PAGE);
  if (!inArea) fail('EINVAL', `[0x${start.toString(16)}, 0x${end.toString(16)}) of BAR${index} is outside its mmap areas`);
  const backing = model.barMemory?.(index);
  if (!backing) throw new InvariantError(`sim: model '${model.kind}' has mmap areas on BAR${index} but no barMemory`);
  file.ref();
  return { backing, offset: Number(start), onUnmap: () => file.unref() };
}
