// VMMs for the migration tests: every plugin, guest RAM, and nics realized on either backend.
// The machines they run on are @vmmkit/sim/testing's simMachine().

import { Vmm, guestIommuPlugin } from '@vmmkit/core';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { vfioPciPlugin, type VfioPciDevice } from '@vmmkit/device-vfio-pci';
import type { SimHost } from '@vmmkit/sim';
import { migrationPlugin } from '../src/index.js';

/** Every plugin a test VMM is composed of. */
export function allPlugins() {
  return [legacyType1Plugin(), iommufdPlugin(), vfioPciPlugin(), guestIommuPlugin(), migrationPlugin()];
}

/**
 * 32 MiB of RAM below 4 GiB and 16 MiB above (`small`: 4 MiB and 1 MiB, still room for a nic ring
 * at 1 MiB), with every plugin and an iommufd object.
 */
export async function vmOn(host: SimHost, options: { incoming?: boolean; small?: boolean } = {}): Promise<Vmm> {
  const [low, high] = options.small ? [4n << 20n, 1n << 20n] : [32n << 20n, 16n << 20n];
  const vmm = await Vmm.create({
    host,
    plugins: allPlugins(),
    memory: [{ gpa: 0n, size: low, name: 'low' }, { gpa: 1n << 32n, size: high, name: 'high' }],
    incoming: options.incoming,
  });
  vmm.addObject('iommufd,id=iommufd0');
  return vmm;
}

export type Backend = 'legacy' | 'iommufd';

/** Realize a vfio-pci device on `backend` and let it master the bus. */
export async function addNic(vmm: Vmm, bdf: string, backend: Backend, extra = ''): Promise<VfioPciDevice> {
  const d = (await vmm.addDevice(`vfio-pci,host=${bdf}${backend === 'iommufd' ? ',iommufd=iommufd0' : ''}${extra}`)) as VfioPciDevice;
  await d.configWrite(0x04, 2, 0x0006);
  return d;
}
