// The checks a guest RAM layout passes before any of it is mapped: whole pages, sizes the host
// port can map, nothing past the top of the 64-bit guest physical space, no overlap (what QEMU's
// ram_block_add and memory_region_add_subregion refuse, caught here as a ConfigError instead).

import { ConfigError } from '../errors/vmm-error.js';
import type { RamSpec } from './guest-memory.js';

const GPA_LIMIT = 1n << 64n;
/** The largest page size of a Linux host (arm64's 64 KiB): blocks are whole pages of every one. */
const LARGEST_PAGE = 1n << 16n;

/**
 * The largest RAM block the host port can map: `HostKernel.mmap` takes its length as a JS
 * number, exact only up to 2^53 - 1, so a block is at most that, rounded down to whole pages of
 * any host. Whether the host then has the address space for it is for `mmap` to say.
 */
export const MAX_RAM_BLOCK_SIZE = (BigInt(Number.MAX_SAFE_INTEGER) / LARGEST_PAGE) * LARGEST_PAGE;

/** A spec with its name settled (unnamed blocks are named by their place in the list). */
export type NamedRamSpec = RamSpec & { readonly name: string };

/** `memory block NAME at 0xGPA of 0xSIZE bytes`, the way every memory error names a block. */
export function describeRamSpec(s: NamedRamSpec): string {
  return `memory block ${s.name} at ${hex(s.gpa)} of ${hex(s.size)} bytes`;
}

/**
 * Name the specs, sort them by address and check them.
 * @throws ConfigError (option `memory`, value `NAME@0xGPA+0xSIZE`) for a block that is empty, not
 *   whole pages, larger than {@link MAX_RAM_BLOCK_SIZE}, reaching past 2^64, or overlapping another.
 */
export function checkRamSpecs(specs: readonly RamSpec[], pageSize: number): NamedRamSpec[] {
  const named = specs.map((s, i) => ({ ...s, name: s.name ?? `ram${i}` }));
  // Numbers mixed with bigints would throw a TypeError in the arithmetic below: say what is wrong instead.
  for (const s of named) {
    if (typeof s.gpa !== 'bigint' || typeof s.size !== 'bigint') {
      throw new ConfigError(`memory block ${s.name}: gpa and size must be bigints (got ${typeof s.gpa} and ${typeof s.size})`, 'memory', s.name);
    }
  }
  const sorted = named.sort((a, b) => (a.gpa < b.gpa ? -1 : a.gpa > b.gpa ? 1 : 0));
  sorted.forEach((s, i) => {
    const wrong = whatIsWrong(s, BigInt(pageSize));
    if (wrong) throw ramSpecError(s, wrong);
    const prev = sorted[i - 1];
    if (prev && prev.gpa + prev.size > s.gpa) throw ramSpecError(s, `overlaps ${describeRamSpec(prev)}`);
  });
  return sorted;
}

/**
 * The ConfigError for a block: names the `memory` option and the block.
 * @param cause the HostError when the host refused to map a block that passed the checks.
 */
export function ramSpecError(s: NamedRamSpec, what: string, cause?: unknown): ConfigError {
  const e = new ConfigError(`${describeRamSpec(s)} ${what}`, 'memory', `${s.name}@${hex(s.gpa)}+${hex(s.size)}`);
  // ConfigError takes no ErrorOptions; set `cause` as Error's constructor would (own, not enumerable).
  if (cause !== undefined) Object.defineProperty(e, 'cause', { value: cause, writable: true, configurable: true });
  return e;
}

function whatIsWrong(s: NamedRamSpec, page: bigint): string | undefined {
  if (s.size <= 0n) return 'must be non-empty';
  if (s.gpa < 0n) return 'must not start below address 0';
  if (s.size % page !== 0n || s.gpa % page !== 0n) return `must be ${page}-byte aligned (the host's page size)`;
  if (s.size > MAX_RAM_BLOCK_SIZE) return `must be at most ${hex(MAX_RAM_BLOCK_SIZE)} bytes, the most the host port can map`;
  if (s.gpa + s.size > GPA_LIMIT) return 'must end within the 64-bit guest physical address space (at most 2^64)';
  return undefined;
}

function hex(v: bigint): string {
  return v < 0n ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`;
}
