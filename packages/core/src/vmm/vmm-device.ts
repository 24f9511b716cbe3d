// Devices (QEMU's -device): what a device type plugin provides, and what it gets to realize one.

import { token } from '../di/token.js';
import type { VmmEventBus } from '../events/vmm-events.js';
import type { HostKernel } from '../host/host-kernel.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { OptionSchema, OptionsOf } from './options.js';
import type { VfioDevice } from '../vfio/vfio-device.js';
import type { VmVfio } from '../vfio/vm-vfio.js';
import type { PciBus } from './pci-bus.js';
import type { VmmObject } from './vmm-object.js';

/** A realized device of a VMM. */
export interface VmmDevice {
  readonly id: string;
  readonly driver: string;
  /** The host device's name (BDF, UUID), for messages. */
  readonly name: string;
  /** Undo realize: release everything the device holds. */
  unrealize(): Promise<void>;
  /**
   * The state the VMM emulates for the device, which migration carries (QEMU's vmstate; for
   * vfio-pci its config space and MSI-X table, while the host device's own state travels
   * through VFIO migration). A device without it has no state of its own.
   */
  saveState?(): Uint8Array | Promise<Uint8Array>;
  /**
   * Restore what `saveState` returned, on a migration destination before the guest runs.
   * @throws when the state does not fit this device (VfioError for VFIO devices).
   */
  loadState?(state: Uint8Array): void | Promise<void>;
}

/** A VMM device backed by a VFIO device (vfio-pci, or one of yours): migration looks for these. */
export interface VfioVmmDevice extends VmmDevice {
  readonly vfio: VfioDevice;
}

/** Whether `device` is backed by a VFIO device. */
export function isVfioVmmDevice(device: VmmDevice): device is VfioVmmDevice {
  return typeof (device as Partial<VfioVmmDevice>).vfio === 'object' && (device as Partial<VfioVmmDevice>).vfio !== null;
}

/**
 * What a device type gets to realize a device: the VM's services it may use, given, not looked
 * up (the DI container is for plugins registering what they provide, not for devices finding it).
 */
export interface DeviceRealizeContext<S extends OptionSchema = OptionSchema> {
  readonly id: string;
  /** Validated options, typed by the device type's schema (object references are ids; look them up with `object`). */
  readonly options: OptionsOf<S>;
  readonly host: HostKernel;
  readonly events: VmmEventBus;
  readonly memory: GuestMemory;
  /** The bus the device sits on: where its DMA goes (system memory, or a guest IOMMU's window). */
  readonly pciBus: PciBus;
  /** Attaching VFIO devices through the backend each asks for. */
  readonly vfio: VmVfio;
  /** An object of the VMM by id (validated to exist when referenced by an option). */
  object(id: string): VmmObject;
}

/**
 * A device type (`-device <driver>,...`), registered by a plugin. Declare its schema `as const
 * satisfies OptionSchema` and `realize` gets the options typed.
 */
export interface VmmDeviceType<S extends OptionSchema = OptionSchema> {
  readonly driver: string;
  readonly options: S;
  /** Realize a device; on failure everything done is undone and the error says why. */
  realize(context: DeviceRealizeContext<S>): Promise<VmmDevice>;
}

/** Multi-registration token: every device type a VMM knows. */
export const VmmDeviceTypes = token<VmmDeviceType>('vmm.device-types');
