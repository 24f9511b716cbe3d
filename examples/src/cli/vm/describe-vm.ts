// What `run` and `migrate` print about a VM before anything moves: its devices (and the VFIO
// backend each one uses) and the migration plan (each container's strategy, every blocker).

import { isVfioVmmDevice, type Vmm } from '@vmmkit/core';
import type { MigrationPlan } from '@vmmkit/migration';
import { formatBytes } from '../../report/format.js';
import { formatTable } from '../format/table.js';
import { migrationFlagNames } from './migration-flags.js';

/** Lines describing the VM's RAM and devices. */
export function describeDevices(vmm: Vmm): string[] {
  const ram = vmm.memory.blocks.map((b) => `${b.name} ${formatBytes(b.size)} at 0x${b.gpa.toString(16)}`).join(', ');
  const lines = [`VM '${vmm.name}': RAM ${ram || 'none'}`];
  if (vmm.devices.length === 0) return [...lines, 'devices: none'];
  const rows = vmm.devices.map((d) => {
    if (!isVfioVmmDevice(d)) return [d.id, d.driver, d.name, '-', '-', '-', '-'];
    const v = d.vfio;
    return [
      d.id, d.driver, v.name,
      v.container?.backend.kind ?? '-',
      v.container?.id ?? '-',
      migrationFlagNames(v.migrationFlags).join(',') || 'none',
      v.dmaLoggingSupported ? 'yes' : 'no',
    ];
  });
  return [...lines, ...formatTable(['DEVICE', 'DRIVER', 'HOST', 'BACKEND', 'CONTAINER', 'MIGRATION', 'DMA-LOGGING'], rows)];
}

/** Lines describing the migration plan: the strategy of each container, then blockers and warnings. */
export function describePlan(plan: MigrationPlan): string[] {
  const lines = ['migration plan:'];
  if (plan.containers.length === 0) lines.push('  no VFIO containers: only RAM would move');
  for (const c of plan.containers) {
    lines.push(`  container ${c.container} (${c.backend}): ${c.strategy} dirty tracking, ${c.reason} [${c.devices.join(', ')}]`);
  }
  for (const b of plan.blockers) lines.push(`  blocker: ${b.reason}`);
  for (const w of plan.warnings) lines.push(`  warning: ${w}`);
  lines.push(plan.blockers.length === 0 ? '  the VM can migrate' : `  the VM cannot migrate (${plan.blockers.length} blocker${plan.blockers.length > 1 ? 's' : ''})`);
  return lines;
}
