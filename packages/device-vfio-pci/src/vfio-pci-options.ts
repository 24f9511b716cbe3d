// The options of -device vfio-pci that vmmkit takes (QEMU-compatible), on top of those every VFIO
// device has (host=, sysfsdev=, fd=, iommufd=).

import { VFIO_DEVICE_OPTIONS, type OnOffAuto, type OptionSchema, type OptionsOf } from '@vmmkit/core';

/** The options of the PCI device model, whatever serves the device (vfio-pci and vfio-user-pci take them). */
export const VFIO_PCI_MODEL_OPTIONS = {
  'enable-migration': { kind: 'on-off-auto', doc: 'migrate the device: on, off, or auto (only with dirty tracking)' },
  'x-device-dirty-page-tracking': { kind: 'on-off', doc: 'let migration use the device\'s own DMA logging (default on)' },
  'x-pre-copy-dirty-page-tracking': { kind: 'on-off', doc: 'sync dirty pages during pre-copy too (default on)' },
  'migration-events': { kind: 'on-off', doc: 'report the device\'s migration states to management (QMP VFIO_MIGRATION; default off)' },
} as const satisfies OptionSchema;

/** -device vfio-pci: where the host device is, and the model's options. */
export const VFIO_PCI_OPTIONS = { ...VFIO_DEVICE_OPTIONS, ...VFIO_PCI_MODEL_OPTIONS } as const satisfies OptionSchema;

/** The vfio-pci options beyond locating the device. */
export interface VfioPciOptions {
  readonly enableMigration: OnOffAuto;
  readonly deviceDirtyPageTracking: boolean;
  readonly preCopyDirtyPageTracking: boolean;
  /** Whether a QMP server reports the device's migration states (VFIO_MIGRATION events). */
  readonly migrationEvents: boolean;
}

/** Read the vfio-pci options from validated values, with QEMU's defaults. */
export function vfioPciOptions(values: OptionsOf<typeof VFIO_PCI_MODEL_OPTIONS>): VfioPciOptions {
  return {
    enableMigration: values['enable-migration'] ?? 'auto',
    deviceDirtyPageTracking: values['x-device-dirty-page-tracking'] ?? true,
    preCopyDirtyPageTracking: values['x-pre-copy-dirty-page-tracking'] ?? true,
    migrationEvents: values['migration-events'] ?? false,
  };
}
