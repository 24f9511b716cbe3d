// The demo VM: guest RAM below and above 4 GiB, and the two NICs on different VFIO backends —
// NIC A through legacy type1, NIC B through IOMMUFD — composed from plugins.

import { Vmm, guestIommuPlugin, type HostKernel, type VmmPlugin } from '@vmmkit/core';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { vfioPciPlugin, type VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { migrationPlugin } from '@vmmkit/migration';
import { NIC_A, NIC_B } from './demo-machine.js';

/** Every plugin vmmkit ships. */
export function allPlugins(): VmmPlugin[] {
  return [legacyType1Plugin(), iommufdPlugin(), vfioPciPlugin(), guestIommuPlugin(), migrationPlugin()];
}

export interface DemoVmOptions {
  /** Guest RAM in MiB, split 3:1 below and above 4 GiB. Default 256. */
  readonly memoryMiB?: number;
  /** Created paused, as a migration destination. */
  readonly incoming?: boolean;
  /** Devices keep their own DMA logging out of migration (x-device-dirty-page-tracking=off). */
  readonly noDeviceDirtyTracking?: boolean;
  readonly name?: string;
}

export interface DemoVm {
  readonly vmm: Vmm;
  /** NIC A (legacy type1) and NIC B (IOMMUFD). */
  readonly nics: readonly VfioPciDevice[];
}

export async function createDemoVm(host: HostKernel, options: DemoVmOptions = {}): Promise<DemoVm> {
  const mib = BigInt(options.memoryMiB ?? 256);
  const low = (mib * 3n) / 4n;
  const vmm = await Vmm.create({
    host,
    name: options.name,
    incoming: options.incoming,
    plugins: allPlugins(),
    memory: [{ gpa: 0n, size: low << 20n, name: 'ram-low' }, { gpa: 1n << 32n, size: (mib - low) << 20n, name: 'ram-high' }],
  });
  try {
    vmm.addObject('iommufd,id=iommufd0');
    const extra = options.noDeviceDirtyTracking ? ',x-device-dirty-page-tracking=off' : '';
    const a = (await vmm.addDevice(`vfio-pci,id=nic-a,host=${NIC_A}${extra}`)) as VfioPciDevice;
    const b = (await vmm.addDevice(`vfio-pci,id=nic-b,host=${NIC_B},iommufd=iommufd0${extra}`)) as VfioPciDevice;
    return { vmm, nics: [a, b] };
  } catch (e) {
    await vmm.close();
    throw e;
  }
}
