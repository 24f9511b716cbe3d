// The kinds of values the CLI's options take, each checked with a message that names the option
// and the value and says what was expected.

import { ConfigError } from '@vmmkit/core';
import { formatSocketAddress, parseSocketAddress } from '@vmmkit/migration';
import type { OptionValue } from './scan-options.js';
import { UsageError } from './usage-error.js';

const UNITS: Readonly<Record<string, bigint>> = { b: 1n, k: 1n << 10n, m: 1n << 20n, g: 1n << 30n, t: 1n << 40n };
const PAGE = 4096n;

function invalid(command: string, v: OptionValue, expected: string): UsageError {
  return new UsageError(`vmmkit ${command}: invalid value '${v.value}' for ${v.option} (expected ${expected})`, v.option, v.value);
}

/**
 * A byte count with an optional binary suffix (`K`, `M`, `G`, `T`, optionally followed by `B` or
 * `iB`; `B` alone is bytes), as QEMU's size options. `defaultUnit` applies to a bare number: QEMU's
 * `-m 512` means 512 MiB, its `max-bandwidth 1000` 1000 bytes.
 */
export function parseByteSize(command: string, v: OptionValue, defaultUnit: 'b' | 'm', expected: string): bigint {
  const m = /^(\d+(?:\.\d+)?)(?:([kmgt])(?:i?b)?|(b))?$/i.exec(v.value);
  if (!m) throw invalid(command, v, expected);
  const unit = UNITS[(m[2] ?? m[3] ?? defaultUnit).toLowerCase()]!;
  const [whole, fraction = ''] = m[1]!.split('.');
  // Exact decimal arithmetic: 1.5G is 1.5 * 2^30 bytes, with no float rounding.
  const scale = 10n ** BigInt(fraction.length);
  const scaled = BigInt(whole! + fraction) * unit;
  if (scaled % scale !== 0n) throw invalid(command, v, expected);
  return scaled / scale;
}

/** Guest RAM (`-m`): a size in MiB by default, positive and a whole number of 4 KiB pages. */
export function parseGuestRamSize(command: string, v: OptionValue): bigint {
  const expected = 'a size such as 512M or 2G, a whole number of 4 KiB pages';
  const size = parseByteSize(command, v, 'm', expected);
  if (size === 0n || size % PAGE !== 0n) throw invalid(command, v, expected);
  return size;
}

/** A bandwidth in bytes per second, with an optional suffix (`100M` is 100 MiB/s). */
export function parseBandwidth(command: string, v: OptionValue): number {
  const expected = 'bytes per second, such as 1000000 or 100M';
  const bytes = parseByteSize(command, v, 'b', expected);
  if (bytes === 0n || bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(command, v, expected);
  return Number(bytes);
}

/** A non-negative number of seconds (`0.2`), returned in milliseconds. */
export function parseSeconds(command: string, v: OptionValue): number {
  if (!/^\d+(\.\d+)?$/.test(v.value)) throw invalid(command, v, 'a number of seconds, such as 10 or 0.5');
  return Math.round(Number(v.value) * 1000);
}

/** A positive number of milliseconds (`300`, `12.5`). */
export function parseMilliseconds(command: string, v: OptionValue): number {
  const ms = /^\d+(\.\d+)?$/.test(v.value) ? Number(v.value) : NaN;
  if (!(ms > 0)) throw invalid(command, v, 'a positive number of milliseconds, such as 300');
  return ms;
}

/** A positive integer. */
export function parsePositiveInteger(command: string, v: OptionValue): number {
  const n = /^\d+$/.test(v.value) ? Number(v.value) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw invalid(command, v, 'a positive integer');
  return n;
}

/** A migration address, `tcp:HOST:PORT` or `unix:PATH`, returned in its canonical form. */
export function parseMigrationUri(command: string, v: OptionValue): string {
  try {
    return formatSocketAddress(parseSocketAddress(v.value));
  } catch (e) {
    if (e instanceof ConfigError) throw invalid(command, v, 'tcp:HOST:PORT or unix:PATH');
    throw e;
  }
}

/** A VM name (`-name`): QEMU's `-name NAME` or `-name guest=NAME`. */
export function parseVmName(command: string, v: OptionValue): string {
  const name = v.value.startsWith('guest=') ? v.value.slice('guest='.length) : v.value;
  // QEMU's other -name keys (process=, debug-threads=) mean nothing to vmmkit: refuse them rather than ignore.
  if (name === '' || name.includes(',')) throw invalid(command, v, 'NAME or guest=NAME');
  return name;
}
