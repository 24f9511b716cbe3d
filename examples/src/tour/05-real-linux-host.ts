// Tour 5: the same VMM on the real kernel. LinuxHost makes the system calls (koffi over libc);
// point it at a PCI device bound to vfio-pci and it is realized through IOMMUFD when /dev/iommu
// exists, else through legacy type1, with the migration plan printed. Bind a device first:
//
//   echo vfio-pci | sudo tee /sys/bus/pci/devices/0000:01:00.0/driver_override
//   echo 0000:01:00.0 | sudo tee /sys/bus/pci/drivers/vfio-pci/bind      # (unbind its driver first)
//   npx tsc -b examples && sudo node examples/dist/tour/05-real-linux-host.js 0000:01:00.0
//
// `npm run test:kernel` runs vmmkit's suites this way inside a QEMU guest with an emulated IOMMU.

import { LinuxHost, Vmm, type HostKernel } from '@vmmkit/core';
import type { VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { planMigration } from '@vmmkit/migration';
import { allPlugins } from '../guest/demo-vm.js';
import { runIfMain } from './run-if-main.js';

/** What the host lacks for device passthrough, in words; empty when it has what `bdf` needs. */
export function missingForPassthrough(host: HostKernel, bdf: string | undefined): string[] {
  const missing: string[] = [];
  if (!host.exists('/dev/iommu') && !host.exists('/dev/vfio/vfio')) missing.push('neither /dev/iommu (CONFIG_IOMMUFD) nor /dev/vfio/vfio (CONFIG_VFIO_CONTAINER) exists');
  if (!bdf) missing.push('no device given: pass the PCI address of a device bound to vfio-pci');
  else if (!host.exists(`/sys/bus/pci/drivers/vfio-pci/${bdf}`)) missing.push(`${bdf} is not bound to vfio-pci (see the commands at the top of this file)`);
  return missing;
}

export async function main(args: string[], host: HostKernel = new LinuxHost()): Promise<string[]> {
  const bdf = args[0];
  const missing = missingForPassthrough(host, bdf);
  if (missing.length) throw new Error(`this host cannot pass a device through yet: ${missing.join('; ')}`);
  const vmm = await Vmm.create({ host, plugins: allPlugins(), memory: [{ gpa: 0n, size: 256n << 20n }] });
  const lines: string[] = [];
  try {
    const useIommufd = host.exists('/dev/iommu');
    if (useIommufd) vmm.addObject('iommufd,id=iommufd0');
    const d = (await vmm.addDevice(`vfio-pci,id=dev0,host=${bdf}${useIommufd ? ',iommufd=iommufd0' : ''}`)) as VfioPciDevice;
    lines.push(`${d.name}: vendor 0x${(await d.configRead(0, 2)).toString(16)} device 0x${(await d.configRead(2, 2)).toString(16)}, through ${d.vfio.container!.backend.kind}`);
    lines.push(`IOMMU dirty tracking: ${d.vfio.iommuDirtyTracking}; device DMA logging: ${d.vfio.dmaLoggingSupported}; migration flags: ${d.vfio.migrationFlags}`);
    const plan = planMigration(vmm);
    for (const c of plan.containers) lines.push(`migration would track ${c.container} by ${c.strategy}`);
    for (const b of plan.blockers) lines.push(`migration blocker: ${b.reason}`);
    for (const line of lines) console.log(line);
    return lines;
  } finally {
    await vmm.close();
  }
}

runIfMain(import.meta, main);
