// User-creatable objects (QEMU's -object): what an object type plugin provides.

import type { DependencyContainer } from 'tsyringe';
import { token } from '../di/token.js';
import type { OptionSchema } from './options.js';

/** A live object of a VMM, such as an `iommufd`. */
export interface VmmObject {
  readonly id: string;
  readonly type: string;
  /** Why the object cannot be removed now (devices still use it), or undefined if it can. */
  busyReason?(): string | undefined;
  /** Release what the object holds. */
  close(): void | Promise<void>;
}

/** An object type (`-object <type>,id=...`), registered by a plugin. */
export interface VmmObjectType {
  readonly type: string;
  readonly options: OptionSchema;
  /** Create the object from validated options (`id` included). */
  create(options: Readonly<Record<string, string | number | boolean>> & { id: string }, container: DependencyContainer): VmmObject;
}

/** Multi-registration token: every object type a VMM knows. */
export const VmmObjectTypes = token<VmmObjectType>('vmm.object-types');
