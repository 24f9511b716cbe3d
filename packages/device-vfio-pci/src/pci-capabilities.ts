// The PCI capabilities of a device's config space that a VMM must handle itself (QEMU's
// vfio_msi_setup / vfio_msix_early_setup): where MSI and MSI-X sit and what they offer.

import { PCI_CAPABILITY_LIST, PCI_CAP_ID_MSI, PCI_CAP_ID_MSIX, PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_QSIZE, PCI_MSIX_PBA, PCI_MSIX_TABLE, PCI_MSI_FLAGS, PCI_MSI_FLAGS_64BIT, PCI_MSI_FLAGS_MASKBIT, PCI_MSI_FLAGS_QMASK, PCI_STATUS, PCI_STATUS_CAP_LIST } from '@vmmkit/core/uapi';



export interface MsiCapability {
  readonly offset: number;
  /** Vectors the device can use (Multiple Message Capable). */
  readonly vectors: number;
  readonly is64bit: boolean;
  readonly perVectorMask: boolean;
  /** Bytes the capability occupies. */
  readonly size: number;
}

export interface MsixCapability {
  readonly offset: number;
  readonly vectors: number;
  readonly tableBar: number;
  readonly tableOffset: number;
  readonly pbaBar: number;
  readonly pbaOffset: number;
}

export interface PciCapabilities {
  readonly msi?: MsiCapability;
  readonly msix?: MsixCapability;
}

/** Walk the capability list of `config` (at most 48 entries, like the kernel's loop guard). */
export function parseCapabilities(config: Uint8Array): PciCapabilities {
  const dv = new DataView(config.buffer, config.byteOffset, config.byteLength);
  const found: { msi?: MsiCapability; msix?: MsixCapability } = {};
  if (!(dv.getUint16(PCI_STATUS, true) & PCI_STATUS_CAP_LIST)) return found;
  let at = config[PCI_CAPABILITY_LIST]! & ~3;
  for (let hops = 0; at >= 0x40 && at + 2 <= config.byteLength && hops < 48; hops++) {
    const id = config[at]!;
    if (id === PCI_CAP_ID_MSI && !found.msi) found.msi = msi(dv, at);
    if (id === PCI_CAP_ID_MSIX && !found.msix) found.msix = msix(dv, at);
    at = config[at + 1]! & ~3;
  }
  return found;
}

function msi(dv: DataView, at: number): MsiCapability {
  const flags = dv.getUint16(at + PCI_MSI_FLAGS, true);
  const is64bit = (flags & PCI_MSI_FLAGS_64BIT) !== 0;
  const perVectorMask = (flags & PCI_MSI_FLAGS_MASKBIT) !== 0;
  // PCI_MSI_32_SIZEOF / PCI_MSI_64_SIZEOF, and with per-vector masking up to the pending bits.
  const size = perVectorMask ? (is64bit ? 0x18 : 0x14) : is64bit ? 0x0e : 0x0a;
  return { offset: at, vectors: 1 << ((flags & PCI_MSI_FLAGS_QMASK) >> 1), is64bit, perVectorMask, size };
}

function msix(dv: DataView, at: number): MsixCapability {
  const flags = dv.getUint16(at + PCI_MSIX_FLAGS, true);
  const table = dv.getUint32(at + PCI_MSIX_TABLE, true);
  const pba = dv.getUint32(at + PCI_MSIX_PBA, true);
  return {
    offset: at,
    vectors: (flags & PCI_MSIX_FLAGS_QSIZE) + 1,
    tableBar: table & 7,
    tableOffset: table & ~7,
    pbaBar: pba & 7,
    pbaOffset: pba & ~7,
  };
}

/** Offset of the MSI data register in the capability. */
export function msiDataOffset(cap: MsiCapability): number {
  return cap.is64bit ? 0x0c : 0x08;
}
