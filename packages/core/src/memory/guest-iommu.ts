// A guest IOMMU model (the part of QEMU's intel-iommu that VFIO sees): the guest maps and unmaps
// IOVA ranges to guest physical memory, and every notifier (a VFIO container following the
// window) is told, in order, before the call returns.

import { ArgumentError, ConfigError } from '../errors/vmm-error.js';
import type { IommuAttributes, IommuMapping, IommuMemoryRegion, IommuNotifier } from './iommu-memory-region.js';

/** The guest IOMMU's page: 4 KiB, as VT-d's and SMMU's smallest, whatever the host's. */
const PAGE = 4096n;

/** What the guest IOMMU reports about itself. */
export interface GuestIommuOptions {
  /** Address width in bits (IOVAs below 2^awBits); undefined reports no limit. */
  readonly awBits?: number;
  /** Whether it translates DMA (false: interrupt remapping only). Default true. */
  readonly dmaTranslation?: boolean;
}

export class GuestIommu implements IommuMemoryRegion {
  readonly attributes: IommuAttributes;
  readonly #mappings: IommuMapping[] = [];
  readonly #notifiers: IommuNotifier[] = [];

  constructor(readonly name: string, options: GuestIommuOptions = {}) {
    const { awBits } = options;
    if (awBits !== undefined && (!Number.isInteger(awBits) || awBits < 12 || awBits > 64)) {
      throw new ConfigError(`guest IOMMU ${name}: address width ${awBits} must be 12..64 bits`, 'aw-bits', String(awBits));
    }
    this.attributes = {
      dmaTranslation: options.dmaTranslation ?? true,
      maxIova: awBits === undefined ? undefined : (1n << BigInt(awBits)) - 1n,
    };
  }

  mappings(): readonly IommuMapping[] {
    return this.#mappings;
  }

  /** The guest physical address `iova` translates to, or undefined when unmapped. */
  translate(iova: bigint): bigint | undefined {
    const m = this.#mappings.find((x) => iova >= x.iova && iova < x.iova + x.size);
    return m && m.gpa + (iova - m.iova);
  }

  /**
   * The guest maps [iova, iova + size) to guest memory at `gpa`. Every notifier maps it too;
   * if one fails, those already told unmap it again and the error propagates.
   * @throws ArgumentError for an unaligned, out-of-range or overlapping mapping.
   */
  async map(iova: bigint, size: bigint, gpa: bigint, readonly = false): Promise<void> {
    this.#checkRange(iova, size);
    if (gpa % PAGE || gpa < 0n) throw new ArgumentError(`${this.name}: GPA 0x${gpa.toString(16)} is not page aligned`);
    const clash = this.#mappings.find((m) => iova < m.iova + m.size && m.iova < iova + size);
    if (clash) throw new ArgumentError(`${this.name}: IOVA 0x${iova.toString(16)} overlaps the mapping at 0x${clash.iova.toString(16)}`);
    const mapping: IommuMapping = { iova, size, gpa, readonly };
    const told: IommuNotifier[] = [];
    try {
      for (const n of this.#notifiers) {
        await n.map(mapping);
        told.push(n);
      }
    } catch (e) {
      for (const n of told.reverse()) await n.unmap(mapping);
      throw e;
    }
    const at = this.#mappings.findIndex((m) => m.iova > iova);
    this.#mappings.splice(at < 0 ? this.#mappings.length : at, 0, mapping);
  }

  /**
   * The guest unmaps every mapping inside [iova, iova + size) (an invalidation). Notifiers are
   * told for each, with where it translated to; all are told even if one fails.
   * @throws ArgumentError when a mapping straddles the range's edge.
   */
  async unmap(iova: bigint, size: bigint): Promise<void> {
    this.#checkRange(iova, size);
    const end = iova + size;
    const straddling = this.#mappings.find((m) => m.iova < end && iova < m.iova + m.size && (m.iova < iova || m.iova + m.size > end));
    if (straddling) throw new ArgumentError(`${this.name}: the mapping at 0x${straddling.iova.toString(16)} straddles the unmapped range`);
    const gone = this.#mappings.filter((m) => m.iova >= iova && m.iova + m.size <= end);
    let first: unknown;
    for (const m of gone) {
      this.#mappings.splice(this.#mappings.indexOf(m), 1);
      for (const n of this.#notifiers) {
        try {
          await n.unmap(m);
        } catch (e) {
          first ??= e;
        }
      }
    }
    if (first !== undefined) throw first;
  }

  async addNotifier(notifier: IommuNotifier): Promise<void> {
    const replayed: IommuMapping[] = [];
    try {
      for (const m of this.#mappings) {
        await notifier.map(m);
        replayed.push(m);
      }
    } catch (e) {
      for (const m of replayed.reverse()) await notifier.unmap(m);
      throw e;
    }
    this.#notifiers.push(notifier);
  }

  async removeNotifier(notifier: IommuNotifier): Promise<void> {
    const i = this.#notifiers.indexOf(notifier);
    if (i >= 0) this.#notifiers.splice(i, 1);
  }

  /** The mappings as bytes, for migration: (iova, size, gpa, flags) u64 quads. */
  save(): Uint8Array {
    const out = new Uint8Array(this.#mappings.length * 32);
    const dv = new DataView(out.buffer);
    this.#mappings.forEach((m, i) => {
      dv.setBigUint64(i * 32, m.iova, true);
      dv.setBigUint64(i * 32 + 8, m.size, true);
      dv.setBigUint64(i * 32 + 16, m.gpa, true);
      dv.setBigUint64(i * 32 + 24, m.readonly ? 1n : 0n, true);
    });
    return out;
  }

  /**
   * Map what `save` returned (on a migration destination, into an IOMMU with no mappings yet).
   * @throws ArgumentError for a state that is not whole mappings, or mappings this IOMMU refuses.
   */
  async load(state: Uint8Array): Promise<void> {
    if (state.byteLength % 32) throw new ArgumentError(`${this.name}: guest IOMMU state of ${state.byteLength} bytes is not whole mappings`);
    if (this.#mappings.length) throw new ArgumentError(`${this.name}: cannot load a state over ${this.#mappings.length} mappings`);
    const dv = new DataView(state.buffer, state.byteOffset, state.byteLength);
    for (let at = 0; at < state.byteLength; at += 32) {
      await this.map(dv.getBigUint64(at, true), dv.getBigUint64(at + 8, true), dv.getBigUint64(at + 16, true), dv.getBigUint64(at + 24, true) === 1n);
    }
  }

  #checkRange(iova: bigint, size: bigint): void {
    if (iova % PAGE || size % PAGE || size <= 0n || iova < 0n) {
      throw new ArgumentError(`${this.name}: IOVA range 0x${iova.toString(16)} (+0x${size.toString(16)}) is not page aligned and non-empty`);
    }
    const max = this.attributes.maxIova;
    if (max !== undefined && iova + size - 1n > max) {
      throw new ArgumentError(`${this.name}: IOVA range 0x${iova.toString(16)} (+0x${size.toString(16)}) is beyond the address width (max 0x${max.toString(16)})`);
    }
  }
}
