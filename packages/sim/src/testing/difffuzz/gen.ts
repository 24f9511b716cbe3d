// What the operations of the differential fuzzer are (OpSpec) and what their generators draw from
// (Gen): references to the handles earlier steps made, user ranges in the sequence's buffers, and
// the IOVAs, lengths and flags that reach the interesting branches of the kernel.

import type { Rng } from './rng.js';
import { FD_KINDS, type BufName, type HandleKind, type Ptr, type Ref, type Step, type StepResult } from './model.js';
import { BUFFERS, NO_FD, NO_ID, type Run } from './run.js';

/** Which part of the uAPI an operation belongs to; a campaign can weigh the families. */
export type Family = 'iommufd' | 'selftest' | 'type1' | 'cdev' | 'migration';

/** An operation the fuzzer can put in a sequence. */
export interface OpSpec {
  readonly name: string;
  readonly family: Family;
  /** How often it is drawn, relative to the others of all families. */
  readonly weight: number;
  /** The handles a successful step makes, by output field. */
  readonly makes?: Readonly<Record<string, HandleKind>>;
  /** Draw the arguments. */
  gen(g: Gen): Record<string, unknown>;
  /** Perform the step on a host; errors are results, never exceptions (see call.ts). */
  run(r: Run, step: Step): StepResult;
}

export const PAGE = 4096n;
export const U64_MAX = (1n << 64n) - 1n;
const MB = 1n << 20n;
/** The selftest mock's aperture starts here; IOVAs around it reach its reserved ranges. */
export const MOCK_START = 16n * MB;

/** The generator's state for one sequence: the random source and the handles made so far. */
export class Gen {
  readonly #handles: { step: number; field: string; kind: HandleKind }[] = [];

  constructor(
    readonly rng: Rng,
    /** Fd kinds the sequence must not close before its end (see THEMES' migration). */
    readonly keepOpen: readonly HandleKind[] = [],
  ) {}

  /** Remember the handles step `step` of `spec` may make. */
  made(step: number, spec: OpSpec): void {
    for (const [field, kind] of Object.entries(spec.makes ?? {})) this.#handles.push({ step, field, kind });
  }

  /**
   * A handle of `kind`: mostly a recent one of that kind, now and then one of another kind (the
   * kernel must tell them apart) or a number nothing was given.
   */
  ref(kind: HandleKind): Ref {
    const isFd = FD_KINDS.includes(kind);
    const same = this.#handles.filter((h) => h.kind === kind);
    const related = this.#handles.filter((h) => FD_KINDS.includes(h.kind) === isFd);
    const roll = this.rng.int(100);
    if (roll < 84 && same.length) return this.#recent(same);
    if (roll < 94 && related.length) return this.#recent([this.rng.pick(related)]);
    return { raw: isFd ? this.rng.pick([NO_FD, -1]) : this.rng.pick([0, NO_ID, 0xffff_ffff]) };
  }

  /** A handle of exactly `kind`, or a number nothing was given: for arguments SimHost must not see mistyped. */
  strictRef(kind: HandleKind): Ref {
    const same = this.#handles.filter((h) => h.kind === kind);
    if (same.length && this.rng.chance(0.9)) return this.#recent(same);
    return { raw: FD_KINDS.includes(kind) ? NO_FD : NO_ID };
  }

  /** A user range: mostly in the big buffer, sometimes the odd-sized or read-only one, rarely a bad address. */
  range(maxPages = 64n): { ptr: Ptr; length: bigint } {
    const buf = this.rng.weighted<BufName | 'raw'>([['big', 80], ['odd', 8], ['ro', 6], ['raw', 6]]);
    if (buf === 'raw') return { ptr: { raw: this.rng.pick([0n, 0x1000n, U64_MAX - PAGE + 1n]) }, length: this.length(maxPages) };
    if (buf === 'big') {
      const huge = this.rng.chance(0.1);
      const length = huge ? this.rng.pick([2n * MB, 3n * MB, 4n * MB]) : this.length(maxPages);
      const room = BUFFERS.big - (length > BUFFERS.big ? 0n : length);
      let off = (BigInt(this.rng.int(Number(room / PAGE))) * PAGE) & ~(this.rng.chance(0.3) ? 2n * MB - 1n : 0n);
      if (this.rng.chance(0.1)) off += this.rng.pick([0x800n, 0x10n]);
      return { ptr: { buf, off }, length: length > BUFFERS.big - off ? BUFFERS.big - off : length };
    }
    // The odd and read-only mappings are two pages, at an address whose alignment no one controls:
    // keep inside them, and let automatic IOVA placement see only the alignment of the offset.
    const off = this.rng.pick([0n, 0x800n, 0x1000n, 5000n, 0x1800n]);
    const room = 8192n - off;
    const length = this.rng.pick([room, room / 2n, 0x800n, 0x1000n]);
    return { ptr: { buf, off }, length: length > room || length === 0n ? room : length };
  }

  /** A length: page multiples mostly, and the edge cases. */
  length(maxPages = 64n): bigint {
    return this.rng.weighted<bigint>([
      [BigInt(1 + this.rng.int(Number(maxPages))) * PAGE, 70], [PAGE, 10], [0x800n, 4], [0n, 4], [1n, 2],
      [U64_MAX, 3], [2n * MB, 4], [U64_MAX - PAGE + 1n, 3],
    ]);
  }

  /** An IOVA near the places where the kernel draws lines: the mock aperture, the MSI window, the address width. */
  iova(): bigint {
    const base = this.rng.weighted<bigint>([
      [MOCK_START, 40], [0x100000n, 15], [0n, 5], [PAGE, 5], [MOCK_START + 2n * MB, 10], [0x7fff_0000n, 4],
      [0xfee0_0000n, 4], [1n << 39n, 3], [U64_MAX - PAGE + 1n, 2], [(1n << 31n) - PAGE, 3],
    ]);
    const pages = this.rng.chance(0.5) ? 0n : BigInt(this.rng.int(64)) * PAGE;
    const unaligned = this.rng.chance(0.05) ? this.rng.pick([0x800n, 1n]) : 0n;
    return (base + pages + unaligned) & U64_MAX;
  }

  /** Flags: mostly valid combinations of `bits`, sometimes an unknown bit. */
  flags(bits: readonly number[], unknown = 1 << 12): number {
    let f = 0;
    for (const b of bits) if (this.rng.chance(0.5)) f |= b;
    return this.rng.chance(0.06) ? f | unknown : f;
  }

  /** How the size field of an extensible struct is set: exact mostly, short, or long with a zero or non-zero tail. */
  sizeMode(): SizeMode {
    return this.rng.weighted<SizeMode>([['exact', 88], ['short', 4], ['long0', 4], ['long1', 4]]);
  }

  #recent(list: readonly { step: number; field: string }[]): Ref {
    const h = list[list.length - 1 - Math.min(list.length - 1, Math.floor(-Math.log(1 - this.rng.u32() / 0x1_0000_0000) * 1.5))]!;
    return { step: h.step, field: h.field };
  }
}

/** See Gen.sizeMode. */
export type SizeMode = 'exact' | 'short' | 'long0' | 'long1';
