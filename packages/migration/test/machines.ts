// Machines and VMMs for the migration tests: nics that migrate (with or without their own DMA
// logging) behind IOMMUs with or without dirty tracking, on either backend.

import { Vmm, guestIommuPlugin } from '@vmmkit/core';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { vfioPciPlugin, type VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { SimHost, type SimHostConfig, type SimMigrationFlag } from '@vmmkit/sim';
import { migrationPlugin } from '../src/index.js';

export const NIC_A = '0000:00:05.0';
export const NIC_B = '0000:00:06.0';
export const EDU = '0000:00:03.0';
export const ALL_FLAGS: SimMigrationFlag[] = ['STOP_COPY', 'P2P', 'PRE_COPY'];

export interface MachineOptions {
  /** The IOMMU tracks dirty IOPTEs. Default true. */
  readonly iommuDirty?: boolean;
  /** The nics log their own DMA. Default true. */
  readonly dmaLogging?: boolean;
  readonly flags?: readonly SimMigrationFlag[];
}

/** Two nics and an edu behind one IOMMU. */
export function machine(o: MachineOptions = {}): SimHostConfig {
  const migration = { flags: o.flags ?? ALL_FLAGS, dmaLogging: o.dmaLogging ?? true };
  return {
    iommus: [{ id: 'iommu0', dirtyTracking: o.iommuDirty ?? true, awBits: 48 }],
    devices: [
      { bdf: NIC_A, model: 'nic', group: 5, migration },
      { bdf: NIC_B, model: 'nic', group: 6, migration },
      { bdf: EDU, model: 'edu', group: 3 },
    ],
  };
}

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
  d.configWrite(0x04, 2, 0x0006);
  return d;
}
