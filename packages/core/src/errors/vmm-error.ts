// The typed errors of vmmkit: one base with a string discriminant, wrapped with context via
// `cause` so the system call's HostError (errno, ioctl) is never lost.

import { HostError } from '../host/host-error.js';
import { ArgumentError, InvariantError, VmmError } from './vmm-error-base.js';

export { ArgumentError, InvariantError, VmmError };

/** A description is wrong: an option, a value, a reference to something that does not exist. */
export class ConfigError extends VmmError {
  override readonly name = 'ConfigError';
  readonly code = 'CONFIG';

  /**
   * @param message says what is wrong, naming the option and value.
   * @param option the option at fault (`iommufd`, `host`, ...), when there is one.
   */
  constructor(message: string, readonly option?: string, readonly value?: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** A VFIO operation failed; names the device and the step, and carries the system call's error. */
export class VfioError extends VmmError {
  override readonly name = 'VfioError';
  readonly code = 'VFIO';
  /** The errno name of the failed system call (`'EBUSY'`), when one failed. */
  readonly errno?: string;
  /** The ioctl that failed, when one did. */
  readonly ioctl?: string;

  /**
   * @param step what was being done, as "failed to <step>" reads (`attach to container`).
   * @param device the device's name (BDF, sysfs path or UUID), when one is involved.
   */
  constructor(
    readonly step: string,
    readonly device?: string,
    options?: ErrorOptions & {
      /** Why, when no system call failed (or in addition to the one that did). */
      detail?: string;
      /** The errno vmmkit reports itself, as QEMU does when it refuses before calling the kernel. */
      errno?: string;
    },
  ) {
    const cause = options?.cause;
    const host = findHostError(cause);
    // A wrapped VfioError already says what failed underneath: keep its words.
    const why =
      cause instanceof VfioError ? `: ${device && cause.device === device ? cause.message.slice(device.length + 2) : cause.message}`
      : cause instanceof HostError ? `: ${cause.ioctl ?? cause.syscall} -> ${cause.errno}`
      : cause instanceof Error && !options?.detail ? `: ${cause.message}`
      : '';
    const detail = options?.detail ? `: ${options.detail}` : '';
    super(`${device ? `${device}: ` : ''}failed to ${step}${detail}${why}`, options);
    // A wrapped VfioError has already taken the errno from its own causes (or was told one).
    const inner = cause instanceof VfioError ? cause : undefined;
    this.errno = host?.errno ?? options?.errno ?? inner?.errno;
    this.ioctl = host?.ioctl ?? inner?.ioctl;
  }
}

/**
 * The VM is migrating, and the operation would change what the migration moves, or start a
 * second one (QEMU refuses device_add, device_del and a second migrate the same way). Nothing
 * was changed.
 */
export class MigrationInProgressError extends VmmError {
  override readonly name = 'MigrationInProgressError';
  readonly code = 'MIGRATION_IN_PROGRESS';

  /**
   * @param operation what was refused, as "cannot <operation>" reads (`add device 'nic1'`).
   * @param direction the migration that runs.
   */
  constructor(readonly operation: string, readonly direction: 'outgoing' | 'incoming', vm: string) {
    super(`VMM '${vm}': cannot ${operation} while ${direction === 'outgoing' ? 'it migrates out' : 'a migration comes in'}`);
  }
}


/** The HostError at the root of a cause chain, if any. */
export function findHostError(e: unknown): HostError | undefined {
  for (let cur = e, depth = 0; cur && depth < 16; cur = (cur as Error).cause, depth++) {
    if (cur instanceof HostError) return cur;
  }
  return undefined;
}

/** The errno name at the root of a cause chain (`'EINVAL'`), if a system call failed. */
export function errnoOf(e: unknown): string | undefined {
  return findHostError(e)?.errno;
}
