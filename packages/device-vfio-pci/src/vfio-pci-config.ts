// A vfio-pci device's configuration space as its guest sees it (QEMU's vfio_pci_read_config /
// vfio_pci_write_config). What a VMM must own is emulated here and never reaches the device:
//   - the BARs (0x10-0x27) and the expansion ROM BAR (0x30): their addresses are the guest's;
//     sizing by writing all ones works as on hardware;
//   - the interrupt line (0x3c): routing is the VMM's;
//   - the whole MSI capability and the MSI-X control word: enabling MSI or MSI-X sets up eventfds
//     through VFIO_DEVICE_SET_IRQS instead of touching the device.
// Every other byte is read from and written to the device through the VFIO config region (the
// device's I/O), where the kernel's vfio-pci or the vfio-user server applies its own filtering.

import { ArgumentError, VfioError, type VfioDeviceIo, type VfioRegionInfo } from '@vmmkit/core';
import { VFIO_PCI_CONFIG_REGION_INDEX } from '@vmmkit/core/uapi';
import { PCI_BASE_ADDRESS_0, PCI_BASE_ADDRESS_MEM_TYPE_64, PCI_BASE_ADDRESS_SPACE_IO, PCI_COMMAND, PCI_INTERRUPT_LINE, PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE, PCI_MSIX_FLAGS_MASKALL, PCI_MSI_FLAGS, PCI_MSI_FLAGS_ENABLE, PCI_MSI_FLAGS_QSIZE, PCI_ROM_ADDRESS } from '@vmmkit/core/uapi';
import { parseCapabilities, type PciCapabilities } from './pci-capabilities.js';


/** What the device does when the guest changes MSI or MSI-X enables. */
export interface ConfigHooks {
  /** MSI was enabled (with `vectors` vectors) or disabled. */
  msiChanged(enabled: boolean, vectors: number): Promise<void>;
  /** MSI-X enable or function mask changed. */
  msixChanged(enabled: boolean, maskAll: boolean): Promise<void>;
}

/** One emulated BAR register (a dword): which bits the guest may set, and the read-only low bits. */
interface BarRegister {
  readonly writable: number;
  readonly fixed: number;
}

export class VfioPciConfig {
  /** The guest's view of the emulated bytes. */
  readonly #emulated: Uint8Array;
  /** 1 where a byte is emulated. */
  readonly #emulatedMask: Uint8Array;
  readonly #bars = new Map<number, BarRegister>();
  readonly capabilities: PciCapabilities;

  private constructor(
    private readonly io: VfioDeviceIo,
    private readonly device: string,
    initial: Uint8Array,
    private readonly hooks: ConfigHooks,
  ) {
    this.#emulated = initial.slice();
    this.#emulatedMask = new Uint8Array(initial.byteLength);
    this.capabilities = parseCapabilities(initial);
  }

  /**
   * Read the device's config space and set up emulation.
   * @param barSizes sizes of BAR0-5 and the ROM (index 6), from their region info (0 = absent).
   */
  static async load(io: VfioDeviceIo, device: string, region: VfioRegionInfo, barSizes: readonly bigint[], hooks: ConfigHooks): Promise<VfioPciConfig> {
    const size = Number(region.size);
    const initial = await io.regionRead(VFIO_PCI_CONFIG_REGION_INDEX, 0n, size);
    if (initial.byteLength !== size) throw new VfioError('read config space', device, { errno: 'EIO', detail: `a short read (${initial.byteLength} of ${size} bytes)` });
    const config = new VfioPciConfig(io, device, initial, hooks);
    config.#emulateBars(barSizes);
    config.#emulate(PCI_INTERRUPT_LINE, 1);
    const { msi, msix } = config.capabilities;
    if (msi) config.#emulate(msi.offset, msi.size);
    if (msix) config.#emulate(msix.offset + PCI_MSIX_FLAGS, 2);
    return config;
  }

  get size(): number {
    return this.#emulated.byteLength;
  }

  /** The guest reads `size` (1, 2 or 4) bytes at `offset`. */
  async read(offset: number, size: 1 | 2 | 4): Promise<number> {
    this.#check(offset, size);
    const bytes = this.#emulated.slice(offset, offset + size);
    if (this.#emulatedMask.subarray(offset, offset + size).some((m) => m === 0)) {
      const phys = await this.io.regionRead(VFIO_PCI_CONFIG_REGION_INDEX, BigInt(offset), size);
      for (let i = 0; i < size; i++) if (!this.#emulatedMask[offset + i]) bytes[i] = phys[i]!;
    }
    return littleEndian(bytes);
  }

  /** The guest writes `size` (1, 2 or 4) bytes at `offset`. */
  async write(offset: number, size: 1 | 2 | 4, value: number): Promise<void> {
    this.#check(offset, size);
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
    const passthrough = [...this.#emulatedMask.subarray(offset, offset + size)].some((m) => m === 0);
    if (passthrough) {
      // The kernel writes only the bytes it lets through; emulated bytes are written too and it
      // virtualizes them itself, so one write of the whole access is faithful enough.
      await this.io.regionWrite(VFIO_PCI_CONFIG_REGION_INDEX, BigInt(offset), bytes.subarray(0, size));
    }
    const msiBefore = this.#msiFlags();
    const msixBefore = this.#msixFlags();
    const emulatedBefore = this.#emulated.slice(offset, offset + size);
    for (let i = 0; i < size; i++) if (this.#emulatedMask[offset + i]) this.#writeEmulatedByte(offset + i, bytes[i]!);
    this.#fixBars(offset, size);
    try {
      await this.#notify(msiBefore, msixBefore);
    } catch (e) {
      // The interrupts could not follow (SET_IRQS failed): the enable did not take, so the guest
      // reads the old control word back and may try again.
      this.#emulated.set(emulatedBefore, offset);
      throw e;
    }
  }

  async #notify(msiBefore: number | undefined, msixBefore: number | undefined): Promise<void> {
    const msi = this.#msiFlags();
    if (msi !== undefined && msi !== msiBefore) {
      const was = (msiBefore! & PCI_MSI_FLAGS_ENABLE) !== 0;
      const is = (msi & PCI_MSI_FLAGS_ENABLE) !== 0;
      const vectors = Math.min(1 << ((msi & PCI_MSI_FLAGS_QSIZE) >> 4), this.capabilities.msi!.vectors);
      if (was || is) await this.hooks.msiChanged(is, vectors);
    }
    const msix = this.#msixFlags();
    if (msix !== undefined && msix !== msixBefore) {
      await this.hooks.msixChanged((msix & PCI_MSIX_FLAGS_ENABLE) !== 0, (msix & PCI_MSIX_FLAGS_MASKALL) !== 0);
    }
  }

  /** The guest's view of the whole config space (emulated bytes over the device's), for migration. */
  async snapshot(): Promise<Uint8Array> {
    const bytes = (await this.io.regionRead(VFIO_PCI_CONFIG_REGION_INDEX, 0n, this.size)).slice();
    for (let i = 0; i < bytes.byteLength; i++) if (this.#emulatedMask[i]) bytes[i] = this.#emulated[i]!;
    return bytes;
  }

  /**
   * Restore a snapshot on a migration destination, as QEMU's vfio_pci_load_config does: the
   * emulated bytes, the command register on the device (vfio-pci cleared Bus Master Enable at
   * open), then the MSI and MSI-X enables, which set up their interrupts through the hooks.
   * @throws ArgumentError when the snapshot is not of this config space's size.
   */
  async restore(saved: Uint8Array): Promise<void> {
    if (saved.byteLength !== this.size) throw new ArgumentError(`config space of ${saved.byteLength} bytes, the device has ${this.size}`);
    const { msi, msix } = this.capabilities;
    const enables = new Set<number>();
    if (msi) enables.add(msi.offset + PCI_MSI_FLAGS).add(msi.offset + PCI_MSI_FLAGS + 1);
    if (msix) enables.add(msix.offset + PCI_MSIX_FLAGS).add(msix.offset + PCI_MSIX_FLAGS + 1);
    for (let i = 0; i < saved.byteLength; i++) if (this.#emulatedMask[i] && !enables.has(i)) this.#emulated[i] = saved[i]!;
    const word = (at: number): number => saved[at]! | (saved[at + 1]! << 8);
    await this.write(PCI_COMMAND, 2, word(PCI_COMMAND));
    if (msi) await this.write(msi.offset + PCI_MSI_FLAGS, 2, word(msi.offset + PCI_MSI_FLAGS));
    if (msix) await this.write(msix.offset + PCI_MSIX_FLAGS, 2, word(msix.offset + PCI_MSIX_FLAGS));
  }

  /** After a device reset: MSI and MSI-X are off (and the function unmasked), as on hardware. */
  resetInterrupts(): void {
    const dv = new DataView(this.#emulated.buffer, this.#emulated.byteOffset);
    const { msi, msix } = this.capabilities;
    if (msi) dv.setUint16(msi.offset + PCI_MSI_FLAGS, dv.getUint16(msi.offset + PCI_MSI_FLAGS, true) & ~(PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE), true);
    if (msix) dv.setUint16(msix.offset + PCI_MSIX_FLAGS, dv.getUint16(msix.offset + PCI_MSIX_FLAGS, true) & ~(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL), true);
  }

  /** The emulated MSI message of `vector`: address and data (data low bits carry the vector). */
  msiMessage(vector: number): { address: bigint; data: number } {
    const msi = this.capabilities.msi!;
    const dv = new DataView(this.#emulated.buffer, this.#emulated.byteOffset);
    const lo = BigInt(dv.getUint32(msi.offset + 4, true));
    const hi = msi.is64bit ? BigInt(dv.getUint32(msi.offset + 8, true)) : 0n;
    const data = dv.getUint16(msi.offset + (msi.is64bit ? 0x0c : 0x08), true);
    // With n vectors enabled, the low log2(n) bits of the data carry the vector number.
    const n = 1 << ((this.#msiFlags()! & PCI_MSI_FLAGS_QSIZE) >> 4);
    return { address: (hi << 32n) | lo, data: (data & ~(n - 1)) | (vector & (n - 1)) };
  }

  #msiFlags(): number | undefined {
    const msi = this.capabilities.msi;
    return msi && new DataView(this.#emulated.buffer, this.#emulated.byteOffset).getUint16(msi.offset + PCI_MSI_FLAGS, true);
  }

  #msixFlags(): number | undefined {
    const msix = this.capabilities.msix;
    return msix && new DataView(this.#emulated.buffer, this.#emulated.byteOffset).getUint16(msix.offset + PCI_MSIX_FLAGS, true);
  }

  /** The guest may change only some bits of the emulated MSI and MSI-X control words. */
  #writeEmulatedByte(at: number, value: number): void {
    const { msi, msix } = this.capabilities;
    if (msi && at === msi.offset + PCI_MSI_FLAGS) {
      value = (this.#emulated[at]! & ~0x71) | (value & 0x71); // enable and Multiple Message Enable
    } else if (msi && at === msi.offset + PCI_MSI_FLAGS + 1) {
      value = this.#emulated[at]!; // capability bits are read-only
    } else if (msi && (at === msi.offset || at === msi.offset + 1)) {
      value = this.#emulated[at]!; // capability ID and next pointer
    } else if (msix && at === msix.offset + PCI_MSIX_FLAGS) {
      value = this.#emulated[at]!; // table size is read-only
    } else if (msix && at === msix.offset + PCI_MSIX_FLAGS + 1) {
      value = (this.#emulated[at]! & ~0xc0) | (value & 0xc0); // enable and function mask
    }
    this.#emulated[at] = value;
  }

  #emulate(offset: number, size: number): void {
    this.#emulatedMask.fill(1, offset, offset + size);
  }

  /** BARs keep their size alignment and type bits whatever the guest writes (sizing by all ones). */
  #emulateBars(sizes: readonly bigint[]): void {
    const dv = new DataView(this.#emulated.buffer, this.#emulated.byteOffset);
    for (let i = 0; i < 6; i++) {
      const at = PCI_BASE_ADDRESS_0 + 4 * i;
      this.#emulate(at, 4);
      const size = sizes[i] ?? 0n;
      const low = dv.getUint32(at, true);
      if (size === 0n) {
        this.#bars.set(at, { writable: 0, fixed: 0 });
        continue;
      }
      const io = (low & PCI_BASE_ADDRESS_SPACE_IO) !== 0;
      const fixed = low & (io ? 0x3 : 0xf);
      this.#bars.set(at, { writable: Number(BigInt.asUintN(32, ~(size - 1n))) & ~(io ? 0x3 : 0xf), fixed });
      if (!io && low & PCI_BASE_ADDRESS_MEM_TYPE_64 && i < 5) {
        this.#emulate(at + 4, 4);
        this.#bars.set(at + 4, { writable: Number(BigInt.asUintN(32, ~(size - 1n) >> 32n)), fixed: 0 });
        i++;
      }
    }
    const rom = sizes[6] ?? 0n;
    this.#emulate(PCI_ROM_ADDRESS, 4);
    this.#bars.set(PCI_ROM_ADDRESS, rom ? { writable: (Number(BigInt.asUintN(32, ~(rom - 1n))) & ~0x7ff) | 0x1, fixed: 0 } : { writable: 0, fixed: 0 });
    for (const at of this.#bars.keys()) this.#fixBars(at, 4);
  }

  #fixBars(offset: number, size: number): void {
    const dv = new DataView(this.#emulated.buffer, this.#emulated.byteOffset);
    for (const [at, reg] of this.#bars) {
      if (at + 4 <= offset || at >= offset + size) continue;
      dv.setUint32(at, ((dv.getUint32(at, true) & reg.writable) | reg.fixed) >>> 0, true);
    }
  }

  #check(offset: number, size: number): void {
    if (![1, 2, 4].includes(size) || offset < 0 || offset + size > this.size || offset % size) {
      throw new ArgumentError(`${this.device}: config access of ${size} bytes at 0x${offset.toString(16)} is not aligned or outside ${this.size} bytes`);
    }
  }
}

function littleEndian(bytes: Uint8Array): number {
  let v = 0;
  for (let i = bytes.byteLength - 1; i >= 0; i--) v = v * 256 + bytes[i]!;
  return v >>> 0;
}
