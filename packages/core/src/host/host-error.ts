// HostError: a failed system call on the host-kernel port, as errno plus what was called.
// The analogue of Node's SystemError; higher layers wrap it (as `cause`) in their own errors.

import { VmmError } from '../errors/vmm-error-base.js';
import { errnoMessage, errnoName } from './errno.js';

/** What a failed call was doing, for the error's fields and message. */
export interface HostErrorDetails {
  /** The errno number the kernel returned (Linux's numbering). */
  readonly errno: number;
  /** The system call: `'open'`, `'ioctl'`, `'mmap'`, ... */
  readonly syscall: string;
  /** The path the call was given, for path-based calls. */
  readonly path?: string;
  /** The file descriptor the call was made on. */
  readonly fd?: number;
  /** The ioctl request number, for `ioctl`. */
  readonly request?: number;
  /** The ioctl's name from the uAPI tables, when the request is known. */
  readonly ioctl?: string;
}

/**
 * A system call on the host kernel failed. Thrown by every `HostKernel` method; nothing on the
 * port returns a negative errno.
 *
 * The message names the call, its path or fd and ioctl, and the errno name, e.g.
 * `ioctl(fd 7, VFIO_GROUP_SET_CONTAINER) failed: EBUSY (Device or resource busy)`.
 */
export class HostError extends VmmError {
  override readonly name = 'HostError';
  readonly code = 'HOST';
  /** The errno name, e.g. `'EINVAL'` (`E<n>` for a number Linux does not define). */
  readonly errno: string;
  /** The errno number, Linux's, e.g. 22. */
  readonly errnoNumber: number;
  readonly syscall: string;
  readonly path?: string;
  readonly fd?: number;
  readonly request?: number;
  readonly ioctl?: string;

  /** `options.cause` may carry an explanation the kernel does not give (the simulated host does). */
  constructor(details: HostErrorDetails, options?: ErrorOptions) {
    const name = errnoName(details.errno);
    super(`${HostError.describeCall(details)} failed: ${name} (${errnoMessage(details.errno)})`, options);
    this.errno = name;
    this.errnoNumber = details.errno;
    this.syscall = details.syscall;
    this.path = details.path;
    this.fd = details.fd;
    this.request = details.request;
    this.ioctl = details.ioctl;
  }

  /** True when `e` is a HostError with the given errno name. */
  static is(e: unknown, errno?: string): e is HostError {
    return e instanceof HostError && (errno === undefined || e.errno === errno);
  }

  private static describeCall(d: HostErrorDetails): string {
    const args: string[] = [];
    if (d.path !== undefined) args.push(`'${d.path}'`);
    if (d.fd !== undefined) args.push(`fd ${d.fd}`);
    if (d.ioctl !== undefined) args.push(d.ioctl);
    else if (d.request !== undefined) args.push(`request 0x${(d.request >>> 0).toString(16)}`);
    return `${d.syscall}(${args.join(', ')})`;
  }
}
