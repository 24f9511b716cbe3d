// The MSI-X table and pending bits, emulated (QEMU emulates them too: hw/pci/msix.c over the
// BAR): the guest programs messages and masks here, and a masked vector's interrupt waits as a
// pending bit until it is unmasked.

import { ArgumentError } from '@vmmkit/core';
import { PCI_MSIX_ENTRY_CTRL_MASKBIT, PCI_MSIX_ENTRY_SIZE, PCI_MSIX_ENTRY_VECTOR_CTRL } from '@vmmkit/core/uapi';
import { type MsixCapability } from './pci-capabilities.js';

export class MsixTable {
  readonly #table: Uint8Array;
  readonly #pba: Uint8Array;

  constructor(readonly cap: MsixCapability) {
    this.#table = new Uint8Array(cap.vectors * PCI_MSIX_ENTRY_SIZE);
    // Every vector starts masked (the PCI specification's reset value).
    for (let v = 0; v < cap.vectors; v++) this.#table[v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL] = PCI_MSIX_ENTRY_CTRL_MASKBIT;
    this.#pba = new Uint8Array(Math.ceil(cap.vectors / 64) * 8);
  }

  /** Whether a BAR access falls in the table or the PBA (and so is emulated here). */
  covers(bar: number, offset: number, size: number): boolean {
    return this.#where(bar, offset, size) !== undefined;
  }

  read(bar: number, offset: number, size: number): bigint {
    const at = this.#where(bar, offset, size)!;
    const bytes = at.kind === 'table' ? this.#table : this.#pba;
    let v = 0n;
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[at.offset + i]!);
    return v;
  }

  /** A guest write; returns the vectors it unmasked that had an interrupt pending. */
  write(bar: number, offset: number, size: number, value: bigint): number[] {
    const at = this.#where(bar, offset, size)!;
    if (at.kind === 'pba') return []; // the PBA is read-only
    const wasMasked = this.#maskedVectors();
    for (let i = 0; i < size; i++) this.#table[at.offset + i] = Number((value >> BigInt(8 * i)) & 0xffn);
    return wasMasked.filter((v) => !this.masked(v) && this.#pending(v));
  }

  /** Whether `vector` is masked in its vector control word. */
  masked(vector: number): boolean {
    return (this.#table[vector * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL]! & PCI_MSIX_ENTRY_CTRL_MASKBIT) !== 0;
  }

  /**
   * An interrupt on `vector`: true to deliver it now; false when it is masked (itself, or the
   * whole function), in which case it is left pending.
   */
  signal(vector: number, functionMasked: boolean): boolean {
    if (!functionMasked && !this.masked(vector)) return true;
    this.#pba[vector >> 3] = this.#pba[vector >> 3]! | (1 << (vector & 7));
    return false;
  }

  /** Vectors whose pending interrupt can go now (after a function unmask); clears their pending bits. */
  takeDeliverable(functionMasked: boolean): number[] {
    if (functionMasked) return [];
    return this.#vectors().filter((v) => this.#pending(v) && !this.masked(v) && (this.#clearPending(v), true));
  }

  /** Clear `vector`'s pending bit (its interrupt was delivered). */
  clearPending(vector: number): void {
    this.#clearPending(vector);
  }

  /** The message the guest programmed for `vector`. */
  message(vector: number): { address: bigint; data: number } {
    const dv = new DataView(this.#table.buffer, vector * PCI_MSIX_ENTRY_SIZE, PCI_MSIX_ENTRY_SIZE);
    return { address: dv.getBigUint64(0, true), data: dv.getUint32(8, true) };
  }

  /** The table and the pending bits, for migration. */
  save(): Uint8Array {
    const out = new Uint8Array(this.#table.byteLength + this.#pba.byteLength);
    out.set(this.#table);
    out.set(this.#pba, this.#table.byteLength);
    return out;
  }

  /** Restore what `save` returned. @throws ArgumentError when it is not a table of this size. */
  load(state: Uint8Array): void {
    if (state.byteLength !== this.#table.byteLength + this.#pba.byteLength) {
      throw new ArgumentError(`MSI-X state of ${state.byteLength} bytes does not fit ${this.cap.vectors} vectors`);
    }
    this.#table.set(state.subarray(0, this.#table.byteLength));
    this.#pba.set(state.subarray(this.#table.byteLength));
  }

  #where(bar: number, offset: number, size: number): { kind: 'table' | 'pba'; offset: number } | undefined {
    const { tableBar, tableOffset, pbaBar, pbaOffset } = this.cap;
    if (bar === tableBar && offset >= tableOffset && offset + size <= tableOffset + this.#table.byteLength) {
      return { kind: 'table', offset: offset - tableOffset };
    }
    if (bar === pbaBar && offset >= pbaOffset && offset + size <= pbaOffset + this.#pba.byteLength) {
      return { kind: 'pba', offset: offset - pbaOffset };
    }
    return undefined;
  }

  #vectors(): number[] {
    return Array.from({ length: this.cap.vectors }, (_, v) => v);
  }

  #maskedVectors(): number[] {
    return this.#vectors().filter((v) => this.masked(v));
  }

  #pending(vector: number): boolean {
    return (this.#pba[vector >> 3]! & (1 << (vector & 7))) !== 0;
  }

  #clearPending(vector: number): void {
    this.#pba[vector >> 3] = this.#pba[vector >> 3]! & ~(1 << (vector & 7));
  }
}
