// The one reader of the CLI's numbers: an unsigned decimal (`12`, `1.5`) read exactly with
// bigints (no float rounding, no overflow to Infinity), scaled to the unit its option counts in
// and held to that option's bounds. option-values.ts turns a refusal into a usage error.

/**
 * The longest number read, in characters. Every value an option can take fits in far fewer
 * (2^64 has 20 digits); a longer one is a mistake, and refusing it early keeps BigInt from
 * chewing on a megabyte of digits.
 */
export const MAX_NUMBER_LENGTH = 32;

/** How an option reads its number. */
export interface DecimalRule {
  /** What one written unit is worth in the result: 2^20 for `1M` read as bytes, 1000 for seconds read as ms. */
  readonly unit: bigint;
  /** A result with a fraction of a unit left over: round it to the nearest whole, or refuse it. */
  readonly fraction: 'round' | 'refuse';
  /** The smallest result accepted. */
  readonly min: bigint;
  /** The largest result accepted. */
  readonly max: bigint;
}

/**
 * `text` (digits, optionally followed by `.` and digits) times `rule.unit`, as a whole number
 * within `[rule.min, rule.max]`; undefined when it is not a number, is longer than
 * {@link MAX_NUMBER_LENGTH}, leaves a fraction the rule refuses, or is out of bounds.
 */
export function readDecimal(text: string, rule: DecimalRule): bigint | undefined {
  if (text.length > MAX_NUMBER_LENGTH) return undefined;
  const m = /^(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) return undefined;
  const fraction = m[2] ?? '';
  const scale = 10n ** BigInt(fraction.length);
  const scaled = BigInt(m[1]! + fraction) * rule.unit;
  let value = scaled / scale;
  const rest = scaled % scale;
  if (rest !== 0n) {
    if (rule.fraction === 'refuse') return undefined;
    if (2n * rest >= scale) value += 1n; // half up
  }
  return value >= rule.min && value <= rule.max ? value : undefined;
}
