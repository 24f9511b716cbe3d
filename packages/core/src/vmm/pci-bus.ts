// The VM's PCI bus: which address space a device realized on it DMAs in (QEMU's
// pci_setup_iommu / pci_device_iommu_address_space) — system memory, or the window of a guest
// IOMMU set up before the devices behind it — and which PCI function sits in which slot of bus 0
// (what a PCI host bridge's config cycles reach).

import { ConfigError } from '../errors/vmm-error.js';
import { AddressSpace } from '../memory/address-space.js';
import type { IommuMemoryRegion } from '../memory/iommu-memory-region.js';
import type { PciFunction } from './pci-function.js';

/** IOVAs span 64 bits when a guest IOMMU reports no address-width limit. */
const IOVA_SPACE = 1n << 64n;
/** Slots of a conventional PCI bus; slot 0 is the host bridge's. */
export const PCI_SLOTS = 32;

export class PciBus {
  #iommu: { region: IommuMemoryRegion; as: AddressSpace } | undefined;
  #placed = 0;
  /** Function 0 of each slot of bus 0 (index = slot); slot 0 is left to the host bridge. */
  readonly #slots: (PciFunction | undefined)[] = new Array<PciFunction | undefined>(PCI_SLOTS).fill(undefined);
  readonly #unplugListeners: ((fn: PciFunction, slot: number) => void)[] = [];

  constructor(
    /** System memory: where devices DMA without a translating guest IOMMU. */
    readonly systemMemory: AddressSpace,
  ) {}

  /** The guest IOMMU in front of the bus, if any (also one that does not translate DMA). */
  get iommu(): IommuMemoryRegion | undefined {
    return this.#iommu?.region;
  }

  /**
   * Put a guest IOMMU in front of the bus. Devices realized afterwards DMA through it when it
   * translates DMA; with translation off it only remaps interrupts and DMA stays identity
   * mapped. As on QEMU, it must come before the devices.
   * @throws ConfigError when devices are already on the bus or an IOMMU is already set.
   */
  async setIommu(region: IommuMemoryRegion): Promise<void> {
    if (this.#iommu) throw new ConfigError(`guest IOMMU ${region.name}: the bus already has one (${this.#iommu.region.name})`);
    if (this.#placed > 0) {
      throw new ConfigError(`guest IOMMU ${region.name}: it must be added before the ${this.#placed} device(s) already on the bus`);
    }
    const as = new AddressSpace(`${region.name} DMA`);
    if (region.attributes.dmaTranslation) {
      const size = region.attributes.maxIova === undefined ? IOVA_SPACE : region.attributes.maxIova + 1n;
      await as.addSection({ kind: 'iommu', start: 0n, size, region });
    }
    this.#iommu = { region, as };
  }

  /** Take the guest IOMMU away again (its window leaves the address space first). */
  async clearIommu(): Promise<void> {
    const iommu = this.#iommu;
    if (!iommu) return;
    this.#iommu = undefined;
    for (const s of [...iommu.as.sections]) await iommu.as.removeSection(s);
  }

  /** The address space a device being realized DMAs in (pci_device_iommu_address_space). */
  deviceAddressSpace(): AddressSpace {
    this.#placed++;
    const iommu = this.#iommu;
    return iommu?.region.attributes.dmaTranslation ? iommu.as : this.systemMemory;
  }

  /**
   * Put a realized PCI function in the lowest free slot of bus 0 (1-31), as function 0.
   * Returns its slot.
   * @throws ConfigError when the bus is full or the device is on it already.
   */
  plug(fn: PciFunction): number {
    if (this.#slots.includes(fn)) throw new ConfigError(`PCI device '${fn.id}' is on the bus already`, 'id', fn.id);
    const slot = this.#slots.findIndex((s, i) => i > 0 && s === undefined);
    if (slot < 0) throw new ConfigError(`PCI device '${fn.id}': all ${PCI_SLOTS - 1} slots of bus 0 are taken`, 'id', fn.id);
    this.#slots[slot] = fn;
    return slot;
  }

  /**
   * Take a function off the bus (nothing when it is not on it). The unplug listeners hear it
   * before this returns, so whatever maps the function's BARs lets go before it is unrealized.
   */
  unplug(fn: PciFunction): void {
    const slot = this.#slots.indexOf(fn);
    if (slot < 0) return;
    this.#slots[slot] = undefined;
    for (const listener of [...this.#unplugListeners]) listener(fn, slot);
  }

  /**
   * Hear functions taken off the bus, synchronously (the listener must not throw). Returns what
   * stops listening.
   */
  onUnplug(listener: (fn: PciFunction, slot: number) => void): () => void {
    this.#unplugListeners.push(listener);
    return () => {
      const at = this.#unplugListeners.indexOf(listener);
      if (at >= 0) this.#unplugListeners.splice(at, 1);
    };
  }

  /** The function in `slot` of bus 0 (function 0), if any. */
  function(slot: number): PciFunction | undefined {
    return this.#slots[slot];
  }
}
