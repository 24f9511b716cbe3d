// Tour 2: choose the VFIO backend device by device. Without iommufd= a device attaches through
// legacy type1, with it through IOMMUFD, and vfio-iommu=<kind> picks any registered backend —
// here the example third-party backend. Each device reports the container it landed in.
//
//   npx tsc -b examples && node examples/dist/tour/02-backend-per-device.js

import { Vmm, isVfioVmmDevice } from '@vmmkit/core';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { vfioPciPlugin } from '@vmmkit/device-vfio-pci';
import { EDU, NIC_A, NIC_B, SimHost, simMachine } from '@vmmkit/sim';
import { ioasBackendPlugin } from '../third-party-backend/plugin.js';
import { runIfMain } from './run-if-main.js';

export async function main(): Promise<Record<string, string>> {
  const host = new SimHost(simMachine());
  const vmm = await Vmm.create({
    host,
    plugins: [legacyType1Plugin(), iommufdPlugin(), ioasBackendPlugin(), vfioPciPlugin()],
    memory: [{ gpa: 0n, size: 64n << 20n }],
  });
  try {
    vmm.addObject('iommufd,id=iommufd0');
    await vmm.addDevice(`vfio-pci,id=legacy,host=${NIC_A}`);
    await vmm.addDevice(`vfio-pci,id=iommufd,host=${NIC_B},iommufd=iommufd0`);
    await vmm.addDevice(`vfio-pci,id=third-party,host=${EDU},vfio-iommu=vfio-iommu-ioas`);
    const placed: Record<string, string> = {};
    for (const d of vmm.devices.filter(isVfioVmmDevice)) {
      const c = d.vfio.container!;
      placed[d.id] = `${c.backend.kind} (${c.id})`;
      console.log(`${d.id.padEnd(12)} ${d.name}  ->  ${placed[d.id]}`);
    }
    return placed;
  } finally {
    await vmm.close();
  }
}

runIfMain(import.meta, main);
