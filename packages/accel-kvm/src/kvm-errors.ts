// The errors of the KVM accelerator: a KVM step that failed (its HostError as cause), and a
// vCPU that stopped because the guest or KVM could not go on.

import { VmmError } from '@vmmkit/core';

/**
 * A step of KVM setup, of the dirty log or of vCPU state failed; names the step (`create the
 * VM`, `map RAM block 'low' as memslot 0`) and carries the HostError (ioctl name and errno) as
 * `cause` where a system call failed.
 */
export class KvmError extends VmmError {
  override readonly name = 'KvmError';
  readonly code = 'KVM';

  constructor(readonly step: string, detail: string, options?: ErrorOptions) {
    super(`KVM: ${step}: ${detail}`, options);
  }

  /** Wrap whatever `body` throws as the failure of `step`. */
  static wrap<T>(step: string, body: () => T): T {
    try {
      return body();
    } catch (e) {
      throw KvmError.of(step, e);
    }
  }

  /** `e` as the failure of `step` (a KvmError already is one). */
  static of(step: string, e: unknown): KvmError {
    if (e instanceof KvmError) return e;
    return new KvmError(step, e instanceof Error ? e.message : String(e), { cause: e });
  }
}

/** Why a vCPU stopped for good: the exit KVM reported, by name. */
export type VcpuStopReason = 'shutdown' | 'fail-entry' | 'internal-error' | 'unhandled-exit' | 'run-failed' | 'io-failed';

/**
 * A vCPU stopped running the guest: a triple fault (SHUTDOWN), an entry KVM refused
 * (FAIL_ENTRY, with the hardware reason), an emulation failure (INTERNAL_ERROR, with its
 * suberror), an exit vmmkit does not handle, a KVM_RUN that failed, or an access no device took.
 */
export class VcpuStoppedError extends VmmError {
  override readonly name = 'VcpuStoppedError';
  readonly code = 'VCPU_STOPPED';

  constructor(readonly vcpu: number, readonly reason: VcpuStopReason, detail: string, options?: ErrorOptions) {
    super(`vCPU ${vcpu} stopped (${reason}): ${detail}`, options);
  }
}
