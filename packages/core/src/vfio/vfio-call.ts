// One place that turns a failed system call into a VfioError naming the step and the device.

import { VfioError } from '../errors/vmm-error.js';

/** Run `call`; a failure becomes VfioError("failed to <step>") with the original as cause. */
export function vfioCall<T>(step: string, device: string | undefined, call: () => T): T {
  try {
    return call();
  } catch (e) {
    throw e instanceof VfioError ? e : new VfioError(step, device, { cause: e });
  }
}
