// The demo VM: guest RAM below and above 4 GiB, and the two NICs on different VFIO backends —
// NIC A through legacy type1, NIC B through IOMMUFD — composed from plugins.

import { Vmm, guestIommuPlugin, type HostKernel, type VmmPlugin } from '@vmmkit/core';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { vfioUserPlugin } from '@vmmkit/backend-vfio-user';
import { vfioPciPlugin, type VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { migrationPlugin } from '@vmmkit/migration';
import { NIC_A, NIC_B } from '@vmmkit/sim';

/** How the shipped plugins are set up. */
export interface DemoPluginOptions {
  /**
   * The file the legacy type1 backend opens its container from: `/dev/vfio/vfio` (default) or
   * `/dev/iommu`, iommufd's VFIO compat container, which has no dirty page tracking.
   */
  readonly type1ContainerPath?: string;
}

/** Every plugin vmmkit ships. */
export function allPlugins(options: DemoPluginOptions = {}): VmmPlugin[] {
  const legacy = options.type1ContainerPath ? legacyType1Plugin({ containerPath: options.type1ContainerPath }) : legacyType1Plugin();
  return [legacy, iommufdPlugin(), vfioUserPlugin(), vfioPciPlugin(), guestIommuPlugin(), migrationPlugin()];
}

export interface DemoVmOptions extends DemoPluginOptions {
  /** Guest RAM in MiB, split 3:1 below and above 4 GiB. Default 256. */
  readonly memoryMiB?: number;
  /** Created paused, as a migration destination. */
  readonly incoming?: boolean;
  /** Devices keep their own DMA logging out of migration (x-device-dirty-page-tracking=off). */
  readonly noDeviceDirtyTracking?: boolean;
  /**
   * The NICs get enable-migration=on: they migrate even when nothing can track their DMA (every
   * mapped page then counts as dirty at every sync), and a migration blocker fails their realize.
   */
  readonly enableMigration?: boolean;
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
    plugins: allPlugins(options),
    memory: [{ gpa: 0n, size: low << 20n, name: 'ram-low' }, { gpa: 1n << 32n, size: (mib - low) << 20n, name: 'ram-high' }],
  });
  try {
    vmm.addObject('iommufd,id=iommufd0');
    const extra =
      (options.noDeviceDirtyTracking ? ',x-device-dirty-page-tracking=off' : '') + (options.enableMigration ? ',enable-migration=on' : '');
    const a = (await vmm.addDevice(`vfio-pci,id=nic-a,host=${NIC_A}${extra}`)) as VfioPciDevice;
    const b = (await vmm.addDevice(`vfio-pci,id=nic-b,host=${NIC_B},iommufd=iommufd0${extra}`)) as VfioPciDevice;
    return { vmm, nics: [a, b] };
  } catch (e) {
    await vmm.close();
    throw e;
  }
}
