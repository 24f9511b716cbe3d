// npm run bench: every benchmark, one table of ratios measured against baselines in the same run.

import { printTable, type Benchmark, type Row } from './harness.js';
import { dirtyBitmapBenchmark } from './dirty-bitmap.bench.js';
import { migrationStreamBenchmark, twoProcessIntegrityBenchmark } from './migration-stream.bench.js';
import { migrationStrategiesBenchmark } from './migration-strategies.bench.js';
import { scalingBenchmark } from './scaling.bench.js';
import { vfioUserBenchmark } from './vfio-user.bench.js';
import { vfioUserIoeventfdBenchmark } from './vfio-user-ioeventfd.bench.js';
import { kvmBenchmark } from './kvm.bench.js';
import { kvmBarBenchmark } from './kvm-bar.bench.js';
import { kvmMsiBenchmark } from './kvm-msi.bench.js';

const benchmarks: Benchmark[] = [
  dirtyBitmapBenchmark, migrationStreamBenchmark, twoProcessIntegrityBenchmark, migrationStrategiesBenchmark, scalingBenchmark,
  vfioUserBenchmark, vfioUserIoeventfdBenchmark, kvmBenchmark, kvmBarBenchmark, kvmMsiBenchmark,
];

const only = process.argv[2];
const rows: Row[] = [];
for (const b of benchmarks) {
  if (only && !b.name.includes(only)) continue;
  process.stderr.write(`running ${b.name}...\n`);
  rows.push(...(await b.run()));
}
printTable(rows);
