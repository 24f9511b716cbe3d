// Making a step's system call and turning its outcome into a result: errno names for failures
// (HostError), the return value, and struct arguments encoded with their size field set as the
// step asks (exact, short, or long with a zero or non-zero tail).

import { HostError } from '@vmmkit/core';
import { type StructInput, type StructMembers, type StructType, type StructValue } from '@vmmkit/core/uapi';
import type { SizeMode } from './gen.js';
import type { StepResult } from './model.js';

/** Room after every struct argument: the kernel may read a declared size past the struct, never past this. */
const SLACK = 64;

/** Run a system call: its return value, or the errno name it failed with. Other errors are bugs and propagate. */
export function attempt(call: () => number | void): { readonly r: string; readonly v: number } {
  try {
    const v = call();
    return { r: 'ok', v: typeof v === 'number' ? v : 0 };
  } catch (e) {
    if (e instanceof HostError) return { r: e.errno, v: -1 };
    throw e;
  }
}

/** The result of a call with no outputs beyond its return value. */
export function plain(outcome: { r: string; v: number }, o?: Record<string, string>): StepResult {
  return outcome.r === 'ok' ? { r: 'ok', v: String(outcome.v), ...(o ? { o } : {}) } : { r: outcome.r };
}

/**
 * A struct argument: `values` encoded, the size field (`size` for iommufd, `argsz` for VFIO) set
 * by `mode`, in a buffer with room past any size the field declares.
 */
export function sized<D extends StructMembers>(struct: StructType<D>, values: StructInput<D>, mode: SizeMode = 'exact', field = 'size'): Uint8Array {
  const bytes = new Uint8Array(struct.size + SLACK);
  bytes.set(struct.encode(values));
  const size = mode === 'short' ? struct.size - 4 : mode === 'exact' ? struct.size : struct.size + 8;
  new DataView(bytes.buffer).setUint32((struct.members as Record<string, { offset: number }>)[field]!.offset, size, true);
  if (mode === 'long1') bytes[struct.size + 5] = 1;
  return bytes;
}

/** The struct as the kernel left it. */
export function decoded<D extends StructMembers>(struct: StructType<D>, bytes: Uint8Array): StructValue<D> {
  return struct.decode(bytes.subarray(0, struct.size));
}

/** Hex of bytes, for results. */
export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}
