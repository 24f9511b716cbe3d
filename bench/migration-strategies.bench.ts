// Pages sent and downtime per dirty-tracking strategy, for the same workload: a 128 MiB guest
// whose vCPUs write a little between iterations while a nic DMA-writes 20000 packets/s into a
// 512 KiB ring (@vmmkit/sim's timed guest, as the demos run it). Five precopy passes, then stop-copy, in one process
// on SimHost. The baseline is type1's tracking, which reports every mapped page dirty at every
// sync; device DMA logging and iommufd HWPT tracking report only what was written.

import { Vmm } from '@vmmkit/core';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { vfioPciPlugin, type VfioPciDevice } from '@vmmkit/device-vfio-pci';
import { migrate, migrationPlugin, type MigrationResult } from '@vmmkit/migration';
import { NIC_A, SimHost, simMachine, timedGuest, type SimHostConfig } from '@vmmkit/sim';
import { median, type Benchmark, type Row } from './harness.js';

const RAM = 128n << 20n;
const TRIALS = 3;

interface Strategy {
  readonly name: string;
  readonly iommuDirty: boolean;
  readonly dmaLogging: boolean;
  readonly device: string;
}

const STRATEGIES: readonly Strategy[] = [
  { name: 'type1 (every mapped page)', iommuDirty: false, dmaLogging: false, device: '' },
  { name: 'device DMA logging', iommuDirty: true, dmaLogging: true, device: ',iommufd=iommufd0' },
  { name: 'iommufd HWPT tracking', iommuDirty: true, dmaLogging: false, device: ',iommufd=iommufd0' },
  { name: 'all-dirty (enable-migration=on)', iommuDirty: false, dmaLogging: false, device: ',iommufd=iommufd0,enable-migration=on' },
];

/** One migratable nic, tracked as the strategy needs. */
function machine(s: Strategy): SimHostConfig {
  return simMachine({ edus: 0, nics: 1, iommuDirtyTracking: s.iommuDirty, dmaLogging: s.dmaLogging });
}

async function vm(host: SimHost, s: Strategy, incoming: boolean): Promise<{ vmm: Vmm; nic: VfioPciDevice }> {
  const vmm = await Vmm.create({
    host, incoming, memory: [{ gpa: 0n, size: RAM }],
    plugins: [legacyType1Plugin(), iommufdPlugin(), vfioPciPlugin(), migrationPlugin()],
  });
  vmm.addObject('iommufd,id=iommufd0');
  const nic = (await vmm.addDevice(`vfio-pci,host=${NIC_A}${s.device}`)) as VfioPciDevice;
  return { vmm, nic };
}

async function migrateOnce(s: Strategy): Promise<MigrationResult> {
  const srcHost = new SimHost(machine(s));
  const source = await vm(srcHost, s, false);
  const destination = await vm(new SimHost(machine(s)), s, true);
  // 256 stores of 64 bytes per 5 ms tick: the same guest writes for every strategy.
  const guest = timedGuest(source.vmm, srcHost, [source.nic], { writeBytesPerSecond: 256 * 64 * 200 });
  // Data in all of RAM, so that zero pages do not flatter any strategy.
  guest.guest.populate();
  await guest.guest.setUpNics();
  source.vmm.events.on('migration:iteration', () => guest.tick(5));
  try {
    return await migrate(source.vmm, destination.vmm, { maxIterations: 5, downtimeLimitMs: 0 });
  } finally {
    await source.vmm.close();
    await destination.vmm.close();
  }
}


export const migrationStrategiesBenchmark: Benchmark = {
  name: 'migration-strategies',
  async run(): Promise<Row[]> {
    const measured = [];
    for (const s of STRATEGIES) {
      const results: MigrationResult[] = [];
      for (let t = 0; t < TRIALS; t++) results.push(await migrateOnce(s));
      measured.push({ s, pages: results[0]!.pagesSent, downtime: median(results.map((r) => r.downtimeMs)), strategy: results[0]!.containers[0]!.strategy });
    }
    const base = measured[0]!;
    return measured.flatMap((m) => [
      {
        benchmark: 'migration strategies', case: `pages sent: ${m.s.name}`, ratio: base.pages / m.pages,
        baseline: `type1 (${base.pages} pages)`, note: `${m.pages} pages sent (${m.strategy}), 5 passes + stop-copy`,
      },
      {
        benchmark: 'migration strategies', case: `downtime: ${m.s.name}`, ratio: base.downtime / m.downtime,
        baseline: `type1 (${base.downtime.toFixed(1)} ms)`, note: `${m.downtime.toFixed(1)} ms paused (median of ${TRIALS})`,
      },
    ]);
  },
};
