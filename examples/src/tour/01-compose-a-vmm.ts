// Tour 1: compose a VMM from plugins. A host (here the simulated one), the plugins the VMM is
// made of, guest RAM, an iommufd object and two vfio-pci devices described as on QEMU's command
// line; the VMM's typed events trace what happens; close() releases every fd and kernel object.
//
//   npx tsc -b examples && node examples/dist/tour/01-compose-a-vmm.js

import { Vmm } from '@vmmkit/core';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { vfioPciPlugin, type VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { migrationPlugin, planMigration } from '@vmmkit/migration';
import { NIC_A, NIC_B, SimHost, simMachine } from '@vmmkit/sim';
import { runIfMain } from './run-if-main.js';

export async function main(): Promise<string[]> {
  const lines: string[] = [];
  const say = (line: string): void => void (lines.push(line), console.log(line));
  const host = new SimHost(simMachine());
  const vmm = await Vmm.create({
    host,
    plugins: [legacyType1Plugin(), iommufdPlugin(), vfioPciPlugin(), migrationPlugin()],
    memory: [{ gpa: 0n, size: 64n << 20n }],
  });
  vmm.events.on('vfio:container-created', (e) => say(`container ${e.container} created (${e.backend})`));
  vmm.events.on('vfio:device-attached', (e) => say(`${e.device} attached to ${e.container}`));
  vmm.events.on('vfio:hwpt-allocated', (e) => say(`HWPT ${e.hwptId} allocated for ${e.device} (dirty tracking: ${e.dirtyTracking})`));

  vmm.addObject('iommufd,id=iommufd0');
  const a = (await vmm.addDevice(`vfio-pci,id=nic-a,host=${NIC_A}`)) as VfioPciDevice;
  const b = (await vmm.addDevice({ driver: 'vfio-pci', id: 'nic-b', host: NIC_B, iommufd: 'iommufd0' })) as VfioPciDevice;
  for (const d of [a, b]) {
    say(`${d.id}: vendor 0x${(await d.configRead(0, 2)).toString(16)}, BAR0 ${d.bar(0).size} bytes, migration flags ${d.vfio.migrationFlags}`);
  }
  for (const c of planMigration(vmm).containers) say(`migration would track ${c.container} by ${c.strategy}: ${c.reason}`);

  await vmm.close();
  say(`closed: ${host.census().fds} fds open`);
  return lines;
}

runIfMain(import.meta, main);
