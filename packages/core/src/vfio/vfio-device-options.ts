// The options every VFIO device takes (QEMU's host=, sysfsdev=, fd=, iommufd=) and how they
// locate the device and pick its backend (vfio_device_get_name, vfio_attach_device).

import { ConfigError } from '../errors/vmm-error.js';
import type { OptionSchema, OptionsOf } from '../vmm/options.js';
import { VFIO_IOMMU_IOMMUFD, VFIO_IOMMU_LEGACY } from './vfio-iommu-backend.js';
import type { VfioDeviceLocation } from './vfio-device.js';

/** Options shared by VFIO device types; a device type spreads them into its own schema. */
export const VFIO_DEVICE_OPTIONS = {
  host: { kind: 'string', doc: 'host PCI address, [domain:]bus:slot.function' },
  sysfsdev: { kind: 'string', doc: 'sysfs path of the host device (PCI function or mdev)' },
  fd: { kind: 'uint', doc: 'an already opened VFIO device cdev (fd passing); needs iommufd=' },
  iommufd: { kind: { object: 'iommufd' }, doc: 'the iommufd object to attach through; selects the iommufd backend' },
  'vfio-iommu': {
    kind: 'string',
    doc: 'vmmkit: the VFIO IOMMU backend kind (legacy, iommufd, or a plugin\'s kind); default iommufd when iommufd= is given, else legacy',
  },
} as const satisfies OptionSchema;

/** The validated VFIO device options. */
export type VfioDeviceOptions = OptionsOf<typeof VFIO_DEVICE_OPTIONS>;

/** Where a VFIO device is, what to call it, and which backend attaches it. */
export interface ResolvedVfioDevice {
  readonly location: VfioDeviceLocation;
  readonly backend: string;
  /** The iommufd object id, when given. */
  readonly iommufd?: string;
}

const HOST = /^(?:([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$/;

/** Normalise a PCI address to `dddd:bb:ss.f`; throws ConfigError naming the value. */
export function parsePciHostAddress(label: string, value: string): string {
  const m = HOST.exec(value);
  const slot = m ? parseInt(m[3]!, 16) : 0;
  if (!m || slot > 0x1f) {
    throw new ConfigError(`${label}: invalid value '${value}' for option 'host' (expected [domain:]bus:slot.function, e.g. 0000:00:03.0)`, 'host', value);
  }
  const hex = (s: string, n: number) => parseInt(s, 16).toString(16).padStart(n, '0');
  return `${hex(m[1] ?? '0', 4)}:${hex(m[2]!, 2)}:${hex(m[3]!, 2)}.${m[4]}`;
}

/**
 * Resolve a VFIO device's location and backend from validated options.
 * @throws ConfigError for no device given, both host= and sysfsdev=, fd= without iommufd=,
 *   or a bad host address.
 */
export function resolveVfioDevice(label: string, options: VfioDeviceOptions): ResolvedVfioDevice {
  const { host, sysfsdev, fd, iommufd } = options;
  if (host !== undefined && sysfsdev !== undefined) {
    throw new ConfigError(`${label}: give host= or sysfsdev=, not both`, 'sysfsdev', sysfsdev);
  }
  if (fd !== undefined && iommufd === undefined) {
    throw new ConfigError(`${label}: fd=${fd} passes a device cdev, which only the iommufd backend can use: add iommufd=<id>`, 'fd', String(fd));
  }
  if (host === undefined && sysfsdev === undefined && fd === undefined) {
    throw new ConfigError(`${label}: no host device given: use host=DDDD:BB:DD.F, sysfsdev=PATH, or fd=N with iommufd=ID`, 'host');
  }
  const path = sysfsdev ?? (host !== undefined ? `/sys/bus/pci/devices/${parsePciHostAddress(label, host)}` : undefined);
  return {
    location: { sysfsdev: path, fd },
    backend: backendKind(options['vfio-iommu'], iommufd),
    iommufd,
  };
}

function backendKind(requested: string | undefined, iommufd: string | undefined): string {
  if (requested === undefined) return iommufd !== undefined ? VFIO_IOMMU_IOMMUFD : VFIO_IOMMU_LEGACY;
  if (requested === 'legacy') return VFIO_IOMMU_LEGACY;
  if (requested === 'iommufd') return VFIO_IOMMU_IOMMUFD;
  return requested;
}
