// The VMM's lifetime in a command: whatever happens, it is closed (devices unrealized, objects
// closed, guest RAM freed) before the command returns.

import type { Vmm } from '@vmmkit/core';

/**
 * Run `body` with `vmm`, then close it. A failure of `body` is the one reported (a close failing
 * after it is secondary); when `body` succeeded, a failing close is the command's failure.
 */
export async function withVm<T>(vmm: Vmm, body: (vmm: Vmm) => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await body(vmm);
  } catch (e) {
    await vmm.close().catch(() => undefined);
    throw e;
  }
  await vmm.close();
  return result;
}
