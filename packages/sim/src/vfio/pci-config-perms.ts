// Which bits of PCI configuration space vfio-pci virtualizes and which the user may write,
// byte by byte (drivers/vfio/pci/vfio_pci_config.c: the perm_bits of the header and capabilities).

import {
  PCI_BASE_ADDRESS_0, PCI_BIST, PCI_CACHE_LINE_SIZE, PCI_CAP_ID_EXP, PCI_CAP_ID_MSI, PCI_CAP_ID_MSIX,
  PCI_CAPABILITY_LIST, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE, PCI_DEVICE_ID, PCI_EXP_DEVCTL, PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN, PCI_LATENCY_TIMER, PCI_MSI_FLAGS, PCI_MSI_FLAGS_64BIT, PCI_MSI_FLAGS_ENABLE, PCI_MSI_FLAGS_QSIZE,
  PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE, PCI_MSIX_FLAGS_MASKALL, PCI_ROM_ADDRESS, PCI_STATUS, PCI_STATUS_CAP_LIST,
  PCI_STD_HEADER_SIZEOF, PCI_VENDOR_ID, findCapability,
} from '@vmmkit/core/uapi';

/** Per byte: bits served from the virtual copy (`virt`) and bits the user may write (`write`). */
export interface ConfigPerms {
  readonly virt: Uint8Array;
  readonly write: Uint8Array;
}

const PCIE_CAP_LENGTH = 0x3c;
const MSIX_CAP_LENGTH = 0x0c;

/** The permissions for a device whose physical configuration space is `config`. */
export function configPerms(config: Uint8Array): ConfigPerms {
  const virt = new Uint8Array(config.byteLength);
  const write = new Uint8Array(config.byteLength);
  // Bytes outside the header and known capabilities are raw read-write: some devices hide
  // registers in the gaps (vfio-pci's unassigned_perms).
  write.fill(0xff, PCI_STD_HEADER_SIZEOF);
  const set = (at: number, size: number, v: number, w: number): void => {
    for (let i = 0; i < size; i++) {
      virt[at + i] = (v >>> (8 * i)) & 0xff;
      write[at + i] = (w >>> (8 * i)) & 0xff;
    }
  };
  headerPerms(set);
  const msi = findCapability(config, PCI_CAP_ID_MSI);
  if (msi) msiPerms(config, msi, set);
  const msix = findCapability(config, PCI_CAP_ID_MSIX);
  if (msix) {
    set(msix, MSIX_CAP_LENGTH, 0, 0);
    set(msix, 2, 0xffff, 0);
    set(msix + PCI_MSIX_FLAGS, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
  }
  const exp = findCapability(config, PCI_CAP_ID_EXP);
  if (exp) {
    set(exp, PCIE_CAP_LENGTH, 0, 0);
    set(exp, 2, 0xffff, 0);
    // Device control is the user's, except Initiate FLR, which vfio-pci emulates.
    set(exp + PCI_EXP_DEVCTL, 2, 0x8000, 0xffff);
  }
  return { virt, write };
}

type Setter = (at: number, size: number, virt: number, write: number) => void;

function headerPerms(set: Setter): void {
  set(PCI_VENDOR_ID, 2, 0xffff, 0);
  set(PCI_DEVICE_ID, 2, 0xffff, 0);
  // INTx disable is virtualized: vfio-pci masks INTx itself and emulates the bit.
  set(PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE, 0xffff);
  set(PCI_STATUS, 2, PCI_STATUS_CAP_LIST, 0);
  set(PCI_CACHE_LINE_SIZE, 1, 0, 0xff);
  set(PCI_LATENCY_TIMER, 1, 0, 0xff);
  set(PCI_BIST, 1, 0, 0xff);
  for (let bar = 0; bar < 6; bar++) set(PCI_BASE_ADDRESS_0 + 4 * bar, 4, 0xffff_ffff, 0xffff_ffff);
  set(PCI_ROM_ADDRESS, 4, 0xffff_ffff, 0xffff_ffff);
  set(PCI_CAPABILITY_LIST, 1, 0xff, 0);
  set(PCI_INTERRUPT_LINE, 1, 0xff, 0xff);
  set(PCI_INTERRUPT_PIN, 1, 0xff, 0);
}

function msiPerms(config: Uint8Array, at: number, set: Setter): void {
  const flags = config[at + PCI_MSI_FLAGS]! | (config[at + PCI_MSI_FLAGS + 1]! << 8);
  const length = flags & PCI_MSI_FLAGS_64BIT ? 0x0e : 0x0a;
  // The whole capability is virtual: the user programs MSI through VFIO_DEVICE_SET_IRQS.
  set(at, length, 0, 0);
  for (let i = 0; i < length; i++) set(at + i, 1, 0xff, i >= 4 ? 0xff : 0);
  set(at + PCI_MSI_FLAGS, 2, 0xffff, PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE);
}
