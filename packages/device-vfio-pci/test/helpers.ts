// Shared setup for the vfio-pci tests: a VMM on SimHost composed of both backends and vfio-pci.

import { Vmm } from '@vmmkit/core';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import type { SimHost, SimHostConfig } from '@vmmkit/sim';
import { simMachine } from '@vmmkit/sim/testing';
import { vfioPciPlugin, type VfioPciDevice, type VfioPciInterrupt } from '../src/index.js';

export { EDU, EDU2, NIC_A as NIC } from '@vmmkit/sim/testing';

/** Two edus and a nic that migrates (every flag, its own DMA logging), behind one dirty-tracking IOMMU. */
export const MACHINE: SimHostConfig = simMachine({ edus: 2, nics: 1, awBits: 39 });

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
export async function findCap(d: VfioPciDevice, id: number): Promise<number> {
  let cap = await d.configRead(0x34, 1);
  while (cap && (await d.configRead(cap, 1)) !== id) cap = await d.configRead(cap + 1, 1);
  return cap;
}
