// Learning a VFIO device's facts the faithful way: realize it in a throwaway VMM, exactly as `run`
// would (so the answer is what vmmkit itself will see), read them, and close the VMM again.
// Realizing opens the device, which resets it, as any VMM starting with it would.

import { isVfioVmmDevice, Vmm, type HostKernel } from '@vmmkit/core';
import { allPlugins } from '../../guest/demo-vm.js';
import { migrationFlagNames } from '../vm/migration-flags.js';
import type { VfioDeviceCaps } from './host-caps.js';
import type { VfioDeviceEntry } from './find-vfio-devices.js';
import { describeError } from './probe-nodes.js';

/** Which backends the host can use, to pick the one to probe a device with. */
export interface UsableBackends {
  readonly iommufd: boolean;
  readonly legacy: boolean;
}

/**
 * The facts of one device. Through iommufd when the host has it and the device has a cdev (the
 * IOMMU's own capabilities are readable only there), else through the legacy type1 backend.
 */
export async function probeVfioDevice(host: HostKernel, entry: VfioDeviceEntry, backends: UsableBackends): Promise<VfioDeviceCaps> {
  const known: VfioDeviceCaps = {
    name: entry.bdf ?? entry.cdev!,
    ...(entry.bdf && { bdf: entry.bdf }),
    ...(entry.cdev && { cdev: `/dev/vfio/devices/${entry.cdev}` }),
    ...(entry.iommuGroup !== undefined && { iommuGroup: entry.iommuGroup }),
  };
  if (!entry.bdf) return { ...known, error: 'no PCI function bound to vfio-pci owns this cdev: not probed' };
  const iommufd = backends.iommufd && entry.cdev !== undefined;
  if (!iommufd && !backends.legacy) return { ...known, error: 'no usable VFIO backend to open it with' };
  const vmm = await Vmm.create({ host, plugins: allPlugins(), name: 'vmmkit-caps' });
  try {
    if (iommufd) vmm.addObject('iommufd,id=iommufd0');
    const device = await vmm.addDevice(`vfio-pci,id=probe,host=${entry.bdf}${iommufd ? ',iommufd=iommufd0' : ''}`);
    if (!isVfioVmmDevice(device)) return { ...known, error: 'vfio-pci did not give a VFIO device' };
    const v = device.vfio;
    const hwCaps = iommufd && v.hostIommuDevice?.realized ? v.hostIommuDevice.hwCaps : undefined;
    return {
      ...known,
      probedWith: v.container?.backend.kind ?? (iommufd ? 'iommufd' : 'legacy'),
      iommuDirtyTracking: v.iommuDirtyTracking,
      ...(hwCaps !== undefined && { iommuHwCaps: `0x${hwCaps.toString(16)}` }),
      migrationFlags: migrationFlagNames(v.migrationFlags),
      deviceDirtyTracking: v.dmaLoggingSupported,
    };
  } catch (e) {
    return { ...known, error: describeError(e) };
  } finally {
    await vmm.close().catch(() => undefined); // a probe's teardown failure changes nothing it learned
  }
}
