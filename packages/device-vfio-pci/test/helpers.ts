// Shared setup for the vfio-pci tests: a VMM on SimHost composed of both backends and vfio-pci.

import { Vmm } from '@vmmkit/core';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { SimHost, type SimHostConfig } from '@vmmkit/sim';
import { vfioPciPlugin, type VfioPciDevice, type VfioPciInterrupt } from '../src/index.js';

export const EDU = '0000:00:03.0';
export const EDU2 = '0000:00:04.0';
export const NIC = '0000:00:05.0';

export const MACHINE: SimHostConfig = {
  iommus: [{ id: 'iommu0', dirtyTracking: true, awBits: 39 }],
  devices: [
    { bdf: EDU, model: 'edu', group: 3 },
    { bdf: EDU2, model: 'edu', group: 4 },
    { bdf: NIC, model: 'nic', group: 5, migration: { flags: ['STOP_COPY', 'P2P', 'PRE_COPY'], dmaLogging: true } },
  ],
};

export async function vmmOn(host: SimHost): Promise<Vmm> {
  return Vmm.create({ host, plugins: [legacyType1Plugin(), iommufdPlugin(), vfioPciPlugin()], memory: [{ gpa: 0n, size: 16n << 20n }] });
}

/** The description of `bdf` on `backend` (iommufd needs the object added first). */
export const described = (bdf: string, backend: 'legacy' | 'iommufd', extra = ''): string =>
  `vfio-pci,host=${bdf}${backend === 'iommufd' ? ',iommufd=iommufd0' : ''}${extra}`;

/** The next interrupt the device raises. */
export function nextInterrupt(device: VfioPciDevice): Promise<VfioPciInterrupt> {
  return new Promise((resolve) => device.once('interrupt', resolve));
}

/** Let the event loop run (eventfd readiness arrives from it). */
export const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** The config-space offset of the device's capability `id` (0 when it has none). */
export function findCap(d: VfioPciDevice, id: number): number {
  let cap = d.configRead(0x34, 1);
  while (cap && d.configRead(cap, 1) !== id) cap = d.configRead(cap + 1, 1);
  return cap;
}
