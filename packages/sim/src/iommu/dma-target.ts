// The IO page table a device's DMA goes through, whichever API attached it: an iommufd HWPT,
// a type1 container's domain, or an iommufd access (mdev). Devices call it; it translates,
// faults, and records what was written (IOPTE dirty bits, pinned-page dirty scope).

import type { UserSpan } from '../memory/user-memory.js';

/** A device DMA that the IOMMU refused. The DMA wrote (or read) nothing. */
export class SimDmaFault extends Error {
  override readonly name = 'SimDmaFault';
  constructor(
    readonly device: string,
    readonly iova: bigint,
    readonly length: number,
    readonly write: boolean,
    readonly reason: string,
  ) {
    super(`DMA ${write ? 'write' : 'read'} by ${device} at IOVA 0x${iova.toString(16)} (+${length}) faulted: ${reason}`);
  }
}

/** The outcome of a translation: the memory behind the IOVA range, or why the IOMMU faults. */
export type DmaTranslation = { readonly spans: readonly UserSpan[] } | { readonly fault: string };

/** An IO page table a device is attached to. */
export interface DmaTarget {
  /** For messages: `'iommufd hwpt 3'`, `'type1 container'`. */
  readonly description: string;
  /** Translate [iova, iova + length) for a device read or write. */
  translate(iova: bigint, length: number, write: boolean): DmaTranslation;
  /** Record a completed device write: IOPTE dirty bits when tracking is on. */
  recordWrite(iova: bigint, length: number): void;
}
