// VFIO_DEVICE_GET_INFO and VFIO_DEVICE_GET_REGION_INFO of vfio-pci, with the region
// capability chain (sparse mmap, MSI-X mappable) and the argsz rules of
// drivers/vfio/pci/vfio_pci_core.c.

import {
  VFIO_DEVICE_FLAGS_PCI, VFIO_DEVICE_FLAGS_RESET, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_NUM_IRQS,
  VFIO_PCI_NUM_REGIONS, VFIO_PCI_ROM_REGION_INDEX, VFIO_PCI_VGA_REGION_INDEX, VFIO_REGION_INFO_CAP_MSIX_MAPPABLE,
  VFIO_REGION_INFO_CAP_SPARSE_MMAP, VFIO_REGION_INFO_FLAG_CAPS, VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE, vfio_device_info, vfio_info_cap_header, vfio_region_info,
  vfio_region_info_cap_sparse_mmap, PCI_CAP_ID_MSIX, PCI_MSIX_TABLE, PCI_MSIX_TABLE_BIR, findCapability,
} from '@vmmkit/core/uapi';
import type { SimBar } from '../devices/pci-model.js';
import { fail } from '../kernel/sim-errno.js';
import type { UserArg } from '../kernel/user-arg.js';
import { VFIO_PCI_OFFSET_SHIFT, type VfioPciCore } from './device-core.js';

const u32At = (bytes: Uint8Array, at: number): number => new DataView(bytes.buffer, bytes.byteOffset).getUint32(at, true);

/** VFIO_DEVICE_GET_INFO. */
export function getDeviceInfo(core: VfioPciCore, user: UserArg): number {
  let minsz = vfio_device_info.members.num_irqs.offset + 4;
  const argsz = u32At(user.read(0, minsz), 0);
  if (argsz < minsz) fail('EINVAL', `argsz ${argsz} < ${minsz}`);
  // Callers that know about cap_offset get it zeroed; older ones are not required to pass it.
  const capsz = vfio_device_info.members.cap_offset.offset + 4;
  if (argsz >= capsz) minsz = capsz;
  const flags = VFIO_DEVICE_FLAGS_PCI | (core.resetWorks ? VFIO_DEVICE_FLAGS_RESET : 0);
  const info = vfio_device_info.encode({ argsz, flags, num_regions: VFIO_PCI_NUM_REGIONS, num_irqs: VFIO_PCI_NUM_IRQS });
  user.write(0, info.subarray(0, minsz));
  return 0;
}

/** A BAR's mmap support: memory BARs that name mmap areas. */
export function barMmapSupported(bar: SimBar | undefined): bar is SimBar {
  return !!bar && bar.type !== 'io' && bar.size > 0n && (bar.mmapAreas?.length ?? 0) > 0;
}

/** The BAR that holds the MSI-X table, or -1. */
export function msixBar(config: Uint8Array): number {
  const at = findCapability(config, PCI_CAP_ID_MSIX);
  return at ? u32At(config, at + PCI_MSIX_TABLE) & PCI_MSIX_TABLE_BIR : -1;
}

/** VFIO_DEVICE_GET_REGION_INFO. */
export function getRegionInfo(core: VfioPciCore, user: UserArg): number {
  const minsz = vfio_region_info.size;
  const info = vfio_region_info.decode(user.read(0, minsz));
  if (info.argsz < minsz) fail('EINVAL', `argsz ${info.argsz} < ${minsz}`);
  const model = core.device.model;
  const offset = BigInt(info.index) << VFIO_PCI_OFFSET_SHIFT;
  let size = 0n;
  let flags = 0;
  let caps: Uint8Array[] = [];
  if (info.index === VFIO_PCI_CONFIG_REGION_INDEX) {
    size = BigInt(model.config.byteLength);
    flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
  } else if (info.index < VFIO_PCI_ROM_REGION_INDEX) {
    const bar = model.bars.find((b) => b.index === info.index);
    size = bar?.size ?? 0n;
    if (size) flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    if (barMmapSupported(bar)) {
      flags |= VFIO_REGION_INFO_FLAG_MMAP;
      caps = barCaps(bar, msixBar(model.config) === bar.index);
    }
  } else if (info.index === VFIO_PCI_VGA_REGION_INDEX) {
    fail('EINVAL', 'the device has no VGA region');
  } else if (info.index !== VFIO_PCI_ROM_REGION_INDEX) {
    fail('EINVAL', `region index ${info.index} >= ${VFIO_PCI_NUM_REGIONS}`);
  }
  let { argsz } = info;
  let capOffset = 0;
  if (caps.length) {
    flags |= VFIO_REGION_INFO_FLAG_CAPS;
    const chain = chainCaps(caps, minsz);
    // Too small for the capabilities: tell the caller how much to pass, and give none.
    if (argsz < minsz + chain.byteLength) argsz = minsz + chain.byteLength;
    else {
      user.write(minsz, chain);
      capOffset = minsz;
    }
  }
  user.write(0, vfio_region_info.encode({ argsz, flags, index: info.index, cap_offset: capOffset, size, offset }));
  return 0;
}

/** The capabilities of an mmap-able BAR: sparse areas when they do not cover it, MSI-X mappable. */
function barCaps(bar: SimBar, holdsMsix: boolean): Uint8Array[] {
  const caps: Uint8Array[] = [];
  const areas = bar.mmapAreas!;
  const whole = areas.length === 1 && areas[0]!.offset === 0n && areas[0]!.size >= bar.size;
  if (!whole) {
    caps.push(vfio_region_info_cap_sparse_mmap.encode({
      header: { id: VFIO_REGION_INFO_CAP_SPARSE_MMAP, version: 1 },
      nr_areas: areas.length,
      areas: areas.map((a) => ({ offset: a.offset, size: a.size })),
    }));
  }
  if (holdsMsix) caps.push(vfio_info_cap_header.encode({ id: VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, version: 1 }));
  return caps;
}

/** Lay capabilities end to end with `next` offsets counted from the start of the info struct. */
function chainCaps(caps: readonly Uint8Array[], base: number): Uint8Array {
  const out = new Uint8Array(caps.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  caps.forEach((cap, i) => {
    out.set(cap, at);
    const next = i + 1 < caps.length ? base + at + cap.byteLength : 0;
    vfio_info_cap_header.set(out, 'next', next, at);
    at += cap.byteLength;
  });
  return out;
}
