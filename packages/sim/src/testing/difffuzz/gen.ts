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
  /** The handles a successful step makes, by output field (given its arguments, when that depends on them). */
  readonly makes?: Readonly<Record<string, HandleKind>> | ((args: Readonly<Record<string, unknown>>) => Readonly<Record<string, HandleKind>>);
  /** A handle kind a well-formed step needs: it is not drawn before some step may have made one. */
  readonly needs?: HandleKind;
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
  readonly #handles: { step: number; field: string; kind: HandleKind; args: Readonly<Record<string, unknown>> }[] = [];
  /** Whether the step being drawn is well formed: its handles of the right kind, sizes exact, no unknown bits. */
  clean = true;
  /** IOVA ranges earlier steps asked to map: later steps aim at them (unmap, copy, dirty reads). */
  readonly #ranges: { iova: bigint; length: bigint; ioas?: Ref }[] = [];

  constructor(
    readonly rng: Rng,
    /** Fd kinds the sequence must not close before its end (see THEMES' migration). */
    readonly keepOpen: readonly HandleKind[] = [],
  ) {}

  /** Start drawing a step: most are well formed, the others may be malformed in any way. */
  beginStep(): void {
    this.clean = this.rng.chance(0.8);
  }

  /** Whether to make this argument malformed: never in a clean step (the odds are for a malformed one). */
  bad(p: number): boolean {
    return !this.clean && this.rng.chance(Math.min(1, p * 4));
  }

  /** Remember the handles step `step` of `spec` with arguments `args` may make. */
  made(step: number, spec: OpSpec, args: Readonly<Record<string, unknown>>): void {
    const makes = typeof spec.makes === 'function' ? spec.makes(args) : spec.makes;
    for (const [field, kind] of Object.entries(makes ?? {})) this.#handles.push({ step, field, kind, args });
  }

  /** An argument of the step that made the handle `ref` names (the device a group fd was opened for, say). */
  argOf(ref: Ref, name: string): unknown {
    if ('raw' in ref) return undefined;
    return this.#handles.find((h) => h.step === ref.step && h.field === ref.field)?.args[name];
  }

  /**
   * A handle of `kind`: a recent one of that kind; in a malformed step now and then one of
   * another kind (the kernel must tell them apart) or a number nothing was given.
   */
  ref(kind: HandleKind, prefer?: (args: Readonly<Record<string, unknown>>) => boolean): Ref {
    if (this.clean) return this.strictRef(kind, prefer);
    const isFd = FD_KINDS.includes(kind);
    const same = this.#handles.filter((h) => h.kind === kind);
    const related = this.#handles.filter((h) => FD_KINDS.includes(h.kind) === isFd);
    const roll = this.rng.int(100);
    if (roll < 50 && same.length) return this.#recent(same);
    if (roll < 80 && related.length) return this.#recent([this.rng.pick(related)]);
    return { raw: isFd ? this.rng.pick([NO_FD, -1]) : this.rng.pick([0, NO_ID, 0xffff_ffff]) };
  }

  /** A handle closed for good: well-formed steps no longer pick it. */
  forget(ref: Ref): void {
    if ('raw' in ref) return;
    const i = this.#handles.findIndex((h) => h.step === ref.step && h.field === ref.field);
    if (i >= 0) this.#handles.splice(i, 1);
  }

  /** The iommufd an id was made in (the fd argument of the step that made it), or a recent iommufd. */
  ctxOf(id: Ref): Ref {
    const fd = (this.argOf(id, 'fd') ?? this.argOf(id, 'iommufd')) as Ref | undefined;
    return this.clean && fd ? fd : this.ref('iommufd');
  }

  /** A handle of `kind` made in the iommufd `ctx` (well-formed steps pair ids with their own iommufd). */
  refIn(kind: HandleKind, ctx: Ref): Ref {
    if (!this.clean) return this.ref(kind);
    const key = JSON.stringify(ctx);
    const same = this.#handles.filter((h) => h.kind === kind && JSON.stringify(h.args.fd ?? h.args.iommufd) === key);
    return same.length ? this.#recent(same) : this.strictRef(kind);
  }

  /** Whether some earlier step may have made a handle of `kind`. */
  has(kind: HandleKind): boolean {
    return this.#handles.some((h) => h.kind === kind);
  }

  /** Remember an IOVA range a step maps (into `ioas`, for iommufd). */
  mapping(iova: bigint, length: bigint, ioas?: Ref): void {
    if (length > 0n && length < U64_MAX / 2n) this.#ranges.push({ iova, length, ioas });
  }

  /** An IOVA range an earlier step mapped (`whole` of the time all of it, else a part), or any if none did. */
  mapped(whole = 0.5): { iova: bigint; length: bigint; ioas?: Ref } {
    if (!this.#ranges.length || this.rng.chance(0.2)) return { iova: this.iova(), length: this.length() };
    const r = this.rng.pick(this.#ranges);
    const pages = r.length / PAGE;
    if (pages < 2n || this.rng.chance(whole)) return r;
    const skip = BigInt(this.rng.int(Number(pages - 1n)));
    return { iova: r.iova + skip * PAGE, length: BigInt(1 + this.rng.int(Number(pages - skip))) * PAGE, ioas: r.ioas };
  }

  /** A handle of exactly `kind` (a recent one), or a number nothing was given if there is none. */
  strictRef(kind: HandleKind, prefer?: (args: Readonly<Record<string, unknown>>) => boolean): Ref {
    const same = this.#handles.filter((h) => h.kind === kind);
    const preferred = prefer ? same.filter((h) => prefer(h.args)) : [];
    if (preferred.length && this.rng.chance(0.8)) return this.#recent(preferred);
    if (same.length) return this.#recent(same);
    return { raw: FD_KINDS.includes(kind) ? NO_FD : NO_ID };
  }

  /** A user range: mostly in the big buffer, sometimes the odd-sized or read-only one, rarely a bad address. */
  range(maxPages = 64n): { ptr: Ptr; length: bigint } {
    const buf = this.rng.weighted<BufName | 'raw'>([['big', 80], ['odd', 8], ['ro', 6], ['raw', this.clean ? 0 : 6]]);
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

  /** A length: page multiples mostly, and (in a malformed step) the edge cases. */
  length(maxPages = 64n): bigint {
    const edge = this.clean ? 0 : 1;
    return this.rng.weighted<bigint>([
      [BigInt(1 + this.rng.int(Number(maxPages))) * PAGE, 70], [PAGE, 10], [2n * MB, 4], [0x800n, 4 * edge], [0n, 4 * edge], [1n, 2 * edge],
      [U64_MAX, 3 * edge], [U64_MAX - PAGE + 1n, 3 * edge],
    ]);
  }

  /** An IOVA near the places where the kernel draws lines: the mock aperture, the MSI window, the address width. */
  iova(): bigint {
    const base = this.rng.weighted<bigint>([
      [MOCK_START, 40], [0x100000n, 15], [0n, 5], [PAGE, 5], [MOCK_START + 2n * MB, 10], [0x7fff_0000n, 4],
      [0xfee0_0000n, 4], [1n << 39n, 3], [U64_MAX - PAGE + 1n, 2], [(1n << 31n) - PAGE, 3],
    ]);
    const pages = this.rng.chance(0.5) ? 0n : BigInt(this.rng.int(64)) * PAGE;
    const unaligned = this.bad(0.05) ? this.rng.pick([0x800n, 1n]) : 0n;
    return (base + pages + unaligned) & U64_MAX;
  }

  /** Flags: mostly valid combinations of `bits`, sometimes an unknown bit. */
  flags(bits: readonly number[], unknown = 1 << 12): number {
    let f = 0;
    for (const b of bits) if (this.rng.chance(0.5)) f |= b;
    return this.bad(0.06) ? f | unknown : f;
  }

  /** How the size field of an extensible struct is set: exact mostly, short, or long with a zero or non-zero tail. */
  sizeMode(): SizeMode {
    return this.clean ? 'exact' : this.rng.weighted<SizeMode>([['exact', 52], ['short', 16], ['long0', 16], ['long1', 16]]);
  }

  /** One of `list`: the most recent ones likelier, every one possible. */
  #recent(list: readonly { step: number; field: string }[]): Ref {
    const back = this.rng.chance(0.4) ? this.rng.int(list.length) : Math.floor(-Math.log(1 - this.rng.u32() / 0x1_0000_0000) * 1.5);
    const h = list[list.length - 1 - Math.min(list.length - 1, back)]!;
    return { step: h.step, field: h.field };
  }
}

/** See Gen.sizeMode. */
export type SizeMode = 'exact' | 'short' | 'long0' | 'long1';
