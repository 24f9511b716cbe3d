// User-creatable objects (QEMU's -object): what an object type plugin provides.

import { token } from '../di/token.js';
import type { VmmEventBus } from '../events/vmm-events.js';
import type { HostKernel } from '../host/host-kernel.js';
import type { OptionSchema, OptionsOf } from './options.js';

/** A live object of a VMM, such as an `iommufd`. */
export interface VmmObject {
  readonly id: string;
  readonly type: string;
  /** Why the object cannot be removed now (devices still use it), or undefined if it can. */
  busyReason?(): string | undefined;
  /** Release what the object holds. */
  close(): void | Promise<void>;
}

/** What an object type gets to create an object: the VM's services it may use. */
export interface ObjectCreateContext {
  readonly host: HostKernel;
  readonly events: VmmEventBus;
}

/** An object type (`-object <type>,id=...`), registered by a plugin; options typed as for devices. */
export interface VmmObjectType<S extends OptionSchema = OptionSchema> {
  readonly type: string;
  readonly options: S;
  /** Create the object from validated options (`id` included). */
  create(options: OptionsOf<S> & { readonly id: string }, context: ObjectCreateContext): VmmObject;
}

/** Multi-registration token: every object type a VMM knows. */
export const VmmObjectTypes = token<VmmObjectType>('vmm.object-types');
