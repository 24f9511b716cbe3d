// One place that turns a failure into a VfioError naming the step and the device.

import { ConfigError, VfioError } from '../errors/vmm-error.js';
import type { HostKernel } from '../host/host-kernel.js';

/** Run `call`; a failure becomes VfioError("failed to <step>") with the original as cause. */
export function vfioCall<T>(step: string, device: string | undefined, call: () => T): T {
  try {
    return call();
  } catch (e) {
    throw e instanceof VfioError && (e.device === device || device === undefined) ? e : new VfioError(step, device, { cause: e });
  }
}

/**
 * Run an async multi-step operation on `device`; a failure that does not already name the
 * device is wrapped as VfioError("<device>: failed to <step>: <what failed inside>"). A
 * ConfigError (an option that is wrong) goes through as it is: it names what to fix.
 */
export async function vfioStep<T>(step: string, device: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    throw (e instanceof VfioError && e.device === device) || e instanceof ConfigError ? e : new VfioError(step, device, { cause: e });
  }
}

/**
 * Close an fd vmmkit owns; a failure becomes VfioError("failed to close <what>"). Linux releases
 * the fd number even when close reports an error, so the caller forgets the fd either way.
 */
export function vfioClose(host: HostKernel, fd: number, what: string, device?: string): void {
  vfioCall(`close ${what}`, device, () => host.close(fd));
}
