// The kinds of values the CLI's options take, each checked with a message that names the option
// and the value and says what was expected.

import { ConfigError, MAX_RAM_BLOCK_SIZE } from '@vmmkit/core';
import { formatSocketAddress, MAX_CHANNELS, parseSocketAddress, type SocketAddressRole } from '@vmmkit/migration';
import { MAX_NUMBER_LENGTH, readDecimal, type DecimalRule } from './decimal.js';
import type { OptionValue } from './scan-options.js';
import { UsageError } from './usage-error.js';

const UNITS: Readonly<Record<string, bigint>> = { b: 1n, k: 1n << 10n, m: 1n << 20n, g: 1n << 30n, t: 1n << 40n };
const PAGE = 4096n;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** QEMU's largest downtime-limit (MAX_MIGRATE_DOWNTIME): 2000 seconds. */
const MAX_DOWNTIME_MS = 2_000_000n;

function invalid(command: string, v: OptionValue, expected: string): UsageError {
  // Quote a runaway value by its start and length: a 400-digit number does not fit in one line.
  const quoted = v.value.length > MAX_NUMBER_LENGTH + 8 ? `'${v.value.slice(0, MAX_NUMBER_LENGTH)}...' (${v.value.length} characters)` : `'${v.value}'`;
  return new UsageError(`vmmkit ${command}: invalid value ${quoted} for ${v.option} (expected ${expected})`, v.option, v.value);
}

/** `v` read by `rule`, or a usage error saying what `expected`. */
function decimal(command: string, v: OptionValue, text: string, rule: DecimalRule, expected: string): bigint {
  const value = readDecimal(text, rule);
  if (value === undefined) throw invalid(command, v, expected);
  return value;
}

/**
 * A byte count with an optional binary suffix (`K`, `M`, `G`, `T`, optionally followed by `B` or
 * `iB`; `B` alone is bytes), as QEMU's size options, from `min` to `max` bytes. `defaultUnit`
 * applies to a bare number: QEMU's `-m 512` means 512 MiB, its `max-bandwidth 1000` 1000 bytes.
 */
export function parseByteSize(
  command: string, v: OptionValue, defaultUnit: 'b' | 'm', bounds: { min: bigint; max: bigint }, expected: string,
): bigint {
  const m = /^([\d.]+)(?:([kmgt])(?:i?b)?|(b))?$/i.exec(v.value);
  if (!m) throw invalid(command, v, expected);
  const unit = UNITS[(m[2] ?? m[3] ?? defaultUnit).toLowerCase()]!;
  // Exact decimal arithmetic: 1.5G is 1.5 * 2^30 bytes; a fraction of a byte is refused.
  return decimal(command, v, m[1]!, { unit, fraction: 'refuse', ...bounds }, expected);
}

/**
 * Guest RAM (`-m`): a size in MiB by default, a positive whole number of 4 KiB pages, and no more
 * than a RAM block the host port can map (MAX_RAM_BLOCK_SIZE, just under 8 PiB).
 */
export function parseGuestRamSize(command: string, v: OptionValue): bigint {
  const limitPiB = (MAX_RAM_BLOCK_SIZE + (1n << 50n) - 1n) >> 50n;
  const expected = `a size such as 512M or 2G, a whole number of 4 KiB pages, less than ${limitPiB} PiB`;
  const size = parseByteSize(command, v, 'm', { min: PAGE, max: MAX_RAM_BLOCK_SIZE }, expected);
  if (size % PAGE !== 0n) throw invalid(command, v, expected);
  return size;
}

/** A bandwidth in bytes per second, with an optional suffix (`100M` is 100 MiB/s). */
export function parseBandwidth(command: string, v: OptionValue): number {
  const expected = 'bytes per second, such as 1000000 or 100M, at most 2^53 - 1';
  return Number(parseByteSize(command, v, 'b', { min: 1n, max: MAX_SAFE }, expected));
}

/**
 * A non-negative number of seconds (`0.2`), returned in whole milliseconds. Any length a timer
 * can count (up to 2^53 - 1 ms): waitFor re-arms past the 2^31 - 1 ms a single timer takes.
 */
export function parseSeconds(command: string, v: OptionValue): number {
  const ms = decimal(command, v, v.value, { unit: 1000n, fraction: 'round', min: 0n, max: MAX_SAFE }, 'a number of seconds, such as 10 or 0.5');
  return Number(ms);
}

/** A positive number of milliseconds (`300`, `12.5`, to the microsecond), at most QEMU's 2000 s. */
export function parseMilliseconds(command: string, v: OptionValue): number {
  const rule = { unit: 1000n, fraction: 'round', min: 1n, max: MAX_DOWNTIME_MS * 1000n } as const;
  const us = decimal(command, v, v.value, rule, `a positive number of milliseconds, such as 300, at most ${MAX_DOWNTIME_MS}`);
  return Number(us) / 1000;
}

/** A positive integer, at most 2^53 - 1. */
export function parsePositiveInteger(command: string, v: OptionValue): number {
  return Number(decimal(command, v, v.value, { unit: 1n, fraction: 'refuse', min: 1n, max: MAX_SAFE }, 'a positive integer'));
}

/** `--channels N`: RAM channels beside the main stream, 0 to the library's MAX_CHANNELS. */
export function parseChannelCount(command: string, v: OptionValue): number {
  return Number(decimal(command, v, v.value, { unit: 1n, fraction: 'refuse', min: 0n, max: BigInt(MAX_CHANNELS) }, `a whole number from 0 to ${MAX_CHANNELS}`));
}

/**
 * A migration address, `tcp:HOST:PORT` or `unix:PATH`, returned in its canonical form. A port is
 * 1 to 65535; a listener (`run --incoming`) may also take 0, any free port, which it prints.
 */
export function parseMigrationUri(command: string, v: OptionValue, role: SocketAddressRole): string {
  try {
    return formatSocketAddress(parseSocketAddress(v.value, role));
  } catch (e) {
    const ports = role === 'listen' ? '0 (any free port) to 65535' : '1 to 65535';
    if (e instanceof ConfigError) throw invalid(command, v, `tcp:HOST:PORT or unix:PATH, with PORT ${ports}`);
    throw e;
  }
}

/**
 * The QMP socket of `--qmp` (QEMU's `-qmp unix:PATH,server=on,wait=off`): its path. vmmkit
 * listens (`server=on`, also `server`) and starts the guest without waiting for a client
 * (`wait=off`, also `nowait`): both must be said, as a QEMU command line would.
 */
export function parseQmpSocket(command: string, v: OptionValue): string {
  const expected = 'unix:PATH,server=on,wait=off';
  if (!v.value.startsWith('unix:')) throw invalid(command, v, expected);
  const [path, ...flags] = v.value.slice('unix:'.length).split(',');
  const given = new Map(flags.map((f) => (f === 'nowait' ? ['wait', 'off'] : f === 'server' ? ['server', 'on'] : f.split('=', 2)) as [string, string]));
  const known = flags.length === given.size && [...given.keys()].every((k) => k === 'server' || k === 'wait');
  if (!path || !known || given.get('server') !== 'on' || given.get('wait') !== 'off') throw invalid(command, v, expected);
  return path;
}

/** A VM name (`-name`): QEMU's `-name NAME` or `-name guest=NAME`. */
export function parseVmName(command: string, v: OptionValue): string {
  const name = v.value.startsWith('guest=') ? v.value.slice('guest='.length) : v.value;
  // QEMU's other -name keys (process=, debug-threads=) mean nothing to vmmkit: refuse them rather than ignore.
  if (name === '' || name.includes(',')) throw invalid(command, v, 'NAME or guest=NAME');
  return name;
}
