// The differential fuzzer's vocabulary: steps (an operation and its arguments), references to the
// handles earlier steps made, user pointers into the sequence's buffers, and the result of a step
// as both hosts report it, normalized so that the two can be compared field by field.

/** What kind of handle a step makes, so later steps can pick one of the right kind. */
export type HandleKind =
  | 'iommufd' | 'container' | 'group' | 'device' | 'datafd' // fds
  | 'ioas' | 'hwpt' | 'devid' | 'stdev'; // iommufd object ids

/** The fd kinds; the others are iommufd object ids. */
export const FD_KINDS: readonly HandleKind[] = ['iommufd', 'container', 'group', 'device', 'datafd'];

/**
 * A handle argument: the value an earlier step's output `field` had on this host (step ids are
 * stable, so a shrunk sequence keeps its references), or a raw number (an id or fd that never
 * existed). A reference to a step that made nothing resolves to the raw fallback.
 */
export type Ref = { readonly step: number; readonly field: string } | { readonly raw: number };

/** The user buffers of every sequence (see Run): where pointers point. */
export type BufName = 'big' | 'odd' | 'ro' | 'scratch';

/** A user address: an offset into one of the sequence's buffers, or a raw address no buffer has. */
export type Ptr = { readonly buf: BufName; readonly off: bigint } | { readonly raw: bigint };

/** One step of a sequence: `op` names the operation (ops-*.ts), `a` holds its arguments. */
export interface Step {
  /** Stable within the sequence: references name it, and shrinking keeps it. */
  readonly id: number;
  readonly op: string;
  readonly a: Readonly<Record<string, unknown>>;
}

export type Sequence = readonly Step[];

/**
 * What a step did on one host: `r` is 'ok' or the errno name; `v` the call's return value; `o`
 * the output fields and user memory it wrote, normalized (allocated ids and fds by the step that
 * first made them, so hosts that number objects differently still compare equal).
 */
export interface StepResult {
  readonly r: string;
  readonly v?: string;
  readonly o?: Readonly<Record<string, string>>;
}

/** A host's results for a sequence, step by step. */
export type Trace = readonly StepResult[];

/** JSON with bigints, for reports and for comparing results. */
export function stringify(value: unknown): string {
  return JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? `${v}n` : v));
}
