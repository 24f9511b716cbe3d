// Builds a device's PCI configuration space as firmware leaves it (IDs, BARs at assigned
// addresses, capability chain), and reads the MSI / MSI-X enable bits a model consults.

import { ConfigError } from '@vmmkit/core';
import type { SimBar } from './pci-model.js';
import {
  PCI_BASE_ADDRESS_0, PCI_BASE_ADDRESS_MEM_PREFETCH, PCI_BASE_ADDRESS_MEM_TYPE_64, PCI_BASE_ADDRESS_SPACE_IO,
  PCI_CAP_ID_EXP, PCI_CAP_ID_MSI, PCI_CAP_ID_MSIX, PCI_CAPABILITY_LIST, PCI_CFG_SPACE_EXP_SIZE, PCI_CFG_SPACE_SIZE,
  PCI_CLASS_PROG, PCI_COMMAND, PCI_DEVICE_ID, PCI_EXP_DEVCAP, PCI_EXP_DEVCAP_FLR, PCI_EXP_FLAGS, PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN, PCI_MSI_FLAGS, PCI_MSI_FLAGS_64BIT, PCI_MSI_FLAGS_ENABLE, PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE,
  PCI_MSIX_PBA, PCI_MSIX_TABLE, PCI_REVISION_ID, PCI_STATUS, PCI_STATUS_CAP_LIST, PCI_SUBSYSTEM_ID,
  PCI_SUBSYSTEM_VENDOR_ID, PCI_VENDOR_ID, findCapability,
} from '@vmmkit/core/uapi';

/** What a device's configuration space holds at power-on, once firmware has assigned its BARs. */
export interface ConfigSpaceSpec {
  readonly vendor: number;
  readonly device: number;
  readonly revision: number;
  /** Base class, subclass and programming interface, as the 24-bit value sysfs shows. */
  readonly classCode: number;
  readonly subsystemVendor: number;
  readonly subsystemId: number;
  /** The command register as firmware left it. */
  readonly command: number;
  /** INTx pin (1 = INTA), 0 for none. */
  readonly interruptPin: number;
  readonly bars: readonly SimBar[];
  /** Where firmware placed each BAR (bus address), by BAR index. */
  readonly barBase: (bar: SimBar) => bigint;
  readonly msi?: { readonly vectors: number };
  readonly msix?: { readonly vectors: number; readonly bar: number; readonly table: number; readonly pba: number };
  /** A PCI Express endpoint: a PCIe capability with FLR and 4 KiB of configuration space. */
  readonly pcie?: boolean;
}

const MSI_CAP_LENGTH_64 = 0x18;
const MSIX_CAP_LENGTH = 0x0c;
const PCIE_CAP_LENGTH = 0x3c;

/** A configuration space laid out from `spec`: header first, then PCIe, MSI and MSI-X capabilities. */
export function buildConfigSpace(spec: ConfigSpaceSpec): Uint8Array {
  const config = new Uint8Array(spec.pcie ? PCI_CFG_SPACE_EXP_SIZE : PCI_CFG_SPACE_SIZE);
  const dv = new DataView(config.buffer);
  dv.setUint16(PCI_VENDOR_ID, spec.vendor, true);
  dv.setUint16(PCI_DEVICE_ID, spec.device, true);
  dv.setUint16(PCI_COMMAND, spec.command, true);
  config[PCI_REVISION_ID] = spec.revision;
  config[PCI_CLASS_PROG] = spec.classCode & 0xff;
  dv.setUint16(PCI_CLASS_PROG + 1, spec.classCode >>> 8, true);
  dv.setUint16(PCI_SUBSYSTEM_VENDOR_ID, spec.subsystemVendor, true);
  dv.setUint16(PCI_SUBSYSTEM_ID, spec.subsystemId, true);
  config[PCI_INTERRUPT_PIN] = spec.interruptPin;
  config[PCI_INTERRUPT_LINE] = spec.interruptPin ? 0x0b : 0xff;
  for (const bar of spec.bars) writeBar(dv, bar, spec.barBase(bar));
  const caps: [id: number, length: number, fill: (at: number) => void][] = [];
  if (spec.pcie) caps.push([PCI_CAP_ID_EXP, PCIE_CAP_LENGTH, (at) => fillPcie(dv, at)]);
  if (spec.msi) caps.push([PCI_CAP_ID_MSI, MSI_CAP_LENGTH_64, (at) => fillMsi(dv, at, spec.msi!.vectors)]);
  if (spec.msix) caps.push([PCI_CAP_ID_MSIX, MSIX_CAP_LENGTH, (at) => fillMsix(dv, at, spec.msix!)]);
  let at = 0x40;
  let link = PCI_CAPABILITY_LIST;
  for (const [id, length, fill] of caps) {
    config[link] = at;
    config[at] = id;
    fill(at);
    link = at + 1;
    at = (at + length + 7) & ~7;
  }
  if (caps.length) dv.setUint16(PCI_STATUS, PCI_STATUS_CAP_LIST, true);
  return config;
}

function writeBar(dv: DataView, bar: SimBar, base: bigint): void {
  const reg = PCI_BASE_ADDRESS_0 + 4 * bar.index;
  if (bar.type === 'io') {
    dv.setUint32(reg, Number(base & 0xfffffffcn) | PCI_BASE_ADDRESS_SPACE_IO, true);
    return;
  }
  const flags = (bar.type === 'mem64' ? PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) | (bar.prefetchable ? PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
  dv.setUint32(reg, Number(base & 0xfffffff0n) | flags, true);
  if (bar.type === 'mem64') dv.setUint32(reg + 4, Number(base >> 32n), true);
}

function fillPcie(dv: DataView, at: number): void {
  dv.setUint16(at + PCI_EXP_FLAGS, 0x0002, true); // version 2, PCI Express endpoint
  dv.setUint32(at + PCI_EXP_DEVCAP, PCI_EXP_DEVCAP_FLR, true);
}

function fillMsi(dv: DataView, at: number, vectors: number): void {
  const qmask = Math.log2(vectors);
  if (!Number.isInteger(qmask) || qmask > 5) throw new ConfigError(`MSI supports 1..32 vectors in powers of two, not ${vectors}`);
  dv.setUint16(at + PCI_MSI_FLAGS, PCI_MSI_FLAGS_64BIT | (qmask << 1), true);
}

function fillMsix(dv: DataView, at: number, msix: NonNullable<ConfigSpaceSpec['msix']>): void {
  dv.setUint16(at + PCI_MSIX_FLAGS, msix.vectors - 1, true);
  dv.setUint32(at + PCI_MSIX_TABLE, msix.table | msix.bar, true);
  dv.setUint32(at + PCI_MSIX_PBA, msix.pba | msix.bar, true);
}

/** Whether MSI is enabled in the device's MSI capability (the kernel sets it on VFIO_DEVICE_SET_IRQS). */
export function msiEnabled(config: Uint8Array): boolean {
  const at = findCapability(config, PCI_CAP_ID_MSI);
  return at !== 0 && (config[at + PCI_MSI_FLAGS]! & PCI_MSI_FLAGS_ENABLE) !== 0;
}

/** Whether MSI-X is enabled in the device's MSI-X capability. */
export function msixEnabled(config: Uint8Array): boolean {
  const at = findCapability(config, PCI_CAP_ID_MSIX);
  return at !== 0 && (new DataView(config.buffer, config.byteOffset).getUint16(at + PCI_MSIX_FLAGS, true) & PCI_MSIX_FLAGS_ENABLE) !== 0;
}

/**
 * A bus address for a BAR, as firmware would assign it: an 8 MiB window per device function
 * below 4 GiB and 1 MiB per BAR inside it, so the BARs of a machine never overlap. Not an
 * allocator: a BAR must be a power of two of at most 1 MiB.
 */
export function firmwareBarBase(bdf: string | undefined, bar: SimBar): bigint {
  const [, , dev = '0', fn = '0'] = (bdf ?? '0000:00:00.0').split(/[:.]/);
  const devfn = (parseInt(dev, 16) << 3) | parseInt(fn, 16);
  if (bar.size > 0x10_0000n || (bar.size & (bar.size - 1n)) !== 0n) {
    throw new ConfigError(`BAR${bar.index} of ${bar.size} bytes does not fit a 1 MiB firmware window`);
  }
  return 0x8000_0000n + BigInt(devfn) * 0x80_0000n + BigInt(bar.index) * 0x10_0000n;
}
