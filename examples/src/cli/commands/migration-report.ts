// What `migrate` prints while it runs and when it is done, from the migration's events and its
// result: each pass's dirty pages, pages sent, throughput and expected downtime; then per
// container the strategy used, and the totals.

import type { Vmm, VmmEvents } from '@vmmkit/core';
import type { MigrationProgress, MigrationResult } from '@vmmkit/migration';
import type { CliIo } from '../cli-io.js';
import { formatBytes, formatMs, formatRate } from '../../report/format.js';

/** Print progress lines from `vmm`'s migration events until the returned function is called. */
export function followMigration(vmm: Vmm, io: CliIo): () => void {
  const progress = (e: MigrationProgress): void => {
    io.out(
      `  ${e.phase === 'stop-copy' ? 'stop-copy' : `iteration ${e.iteration}`}: ` +
        `${e.dirtyPages} dirty pages, sent ${e.pagesSent} pages + ${e.zeroPages} zero, ` +
        `device ${formatBytes(e.deviceBytes)}, ${formatRate(e.throughput)}, expected downtime ${formatMs(e.expectedDowntimeMs)}`,
    );
  };
  const switchover = (e: VmmEvents['migration:switchover'][0]): void => {
    const why = e.converged ? 'the expected downtime fits the limit' : 'the iteration limit was reached';
    io.out(`  switchover: ${why} (${e.dirtyPages} dirty pages left, expected downtime ${formatMs(e.expectedDowntimeMs)})`);
  };
  vmm.events.on('migration:progress', progress);
  vmm.events.on('migration:switchover', switchover);
  return () => {
    vmm.events.off('migration:progress', progress);
    vmm.events.off('migration:switchover', switchover);
  };
}

/** The result of a completed migration as lines. */
export function describeResult(result: MigrationResult): string[] {
  const lines = [
    `migration completed in ${formatMs(result.durationMs)}: ${result.iterations} iteration${result.iterations === 1 ? '' : 's'}` +
      ` (${result.converged ? 'converged' : 'did not converge'})`,
    `  RAM: ${result.pagesSent} pages sent, ${result.zeroPages} zero pages; device state ${formatBytes(result.deviceBytes)}; ` +
      `${formatBytes(result.bytesSent)} in total at ${formatRate(result.throughput)}`,
    `  downtime ${formatMs(result.downtimeMs)} (expected ${formatMs(result.expectedDowntimeMs)})`,
  ];
  for (const c of result.containers) {
    lines.push(`  container ${c.container} (${c.backend}): ${c.strategy} dirty tracking, ${c.dirtyPages} dirty pages [${c.devices.join(', ')}]`);
  }
  return lines;
}
