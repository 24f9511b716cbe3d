// `vmmkit caps` for people: the nodes, the backends and KVM in a few plain sentences, then a
// table of VFIO devices.

import { formatTable } from '../format/table.js';
import type { DeviceNodeCaps, HostCaps, VfioDeviceCaps } from './host-caps.js';

const BACKEND_NAMES = {
  'legacy-type1': 'legacy type1',
  iommufd: 'iommufd',
  'iommufd-vfio-compat': 'iommufd VFIO compat',
} as const;

/** The report as lines of text. */
export function formatHostCaps(caps: HostCaps): string[] {
  const lines = [`host: ${caps.host === 'sim' ? 'simulated (vmmkit demo machine)' : 'this machine (Linux)'}`, '', 'device nodes:'];
  for (const node of caps.nodes) lines.push(`  ${node.path.padEnd(15)} ${nodeState(node)}`);
  lines.push(`  ${caps.kvm.path.padEnd(15)} ${nodeState(caps.kvm)}${caps.kvm.apiVersion !== undefined ? `, KVM_GET_API_VERSION ${caps.kvm.apiVersion}` : ''}`);
  lines.push('', 'VFIO backends:');
  for (const b of caps.backends) {
    lines.push(`  ${BACKEND_NAMES[b.id].padEnd(20)} ${b.usable ? 'usable' : 'not usable'}: ${b.detail}`);
  }
  lines.push('', `KVM: ${caps.kvm.usable ? 'usable' : 'not usable'}`, '');
  if (caps.devices.length === 0) {
    lines.push('VFIO devices: none (no PCI function is bound to vfio-pci and /dev/vfio/devices has no cdev)');
    return lines;
  }
  lines.push('VFIO devices:');
  const rows = caps.devices.map(deviceRow);
  lines.push(...formatTable(['DEVICE', 'GROUP', 'CDEV', 'PROBED WITH', 'IOMMU DIRTY', 'MIGRATION', 'DMA LOGGING'], rows).map((l) => `  ${l}`));
  for (const d of caps.devices) if (d.error) lines.push(`  ${d.name}: ${d.error}`);
  return lines;
}

function nodeState(node: DeviceNodeCaps): string {
  if (!node.present) return 'absent';
  return node.openable ? 'present, opens read-write' : `present, does not open (${node.error})`;
}

function deviceRow(d: VfioDeviceCaps): string[] {
  const yesNo = (v: boolean | undefined): string => (v === undefined ? '?' : v ? 'yes' : 'no');
  return [
    d.name,
    d.iommuGroup?.toString() ?? '-',
    d.cdev ?? '-',
    d.probedWith ?? 'not probed',
    yesNo(d.iommuDirtyTracking),
    d.migrationFlags === undefined ? '?' : d.migrationFlags.join(',') || 'none',
    yesNo(d.deviceDirtyTracking),
  ];
}
