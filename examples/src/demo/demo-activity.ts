// What runs in the demo's guest while it migrates: the JavaScript guest of the simulated hosts
// (vCPU-like stores and both NICs' rings, on timers), or with --kvm a real guest on KVM.

import type { SimGuestRunner } from '@vmmkit/sim';
import { DEMO_WORKLOAD } from './demo-scenario.js';
import { formatBytes, formatCount } from '../report/format.js';

/** The guest at work on the source. */
export interface DemoActivity {
  /** Start the guest's work (its drivers set the NICs up first). */
  start(): Promise<void>;
  /** Stop it (the source is paused after the migration; nothing changes while both ends are compared). */
  stop(): void;
  /** The RAM the guest writes to: what the first precopy pass must send at least. */
  readonly workingSetBytes: number;
  /** The workload, in words. */
  readonly description: string;
}

/** The simulated hosts' JavaScript guest, filled with data at boot. */
export function javascriptActivity(runner: SimGuestRunner): DemoActivity {
  runner.guest.populate();
  const w = DEMO_WORKLOAD;
  return {
    start: () => runner.start(),
    stop: () => runner.stop(),
    workingSetBytes: runner.guest.workingSetBytes,
    description: `vCPUs store ${formatBytes(w.writeBytesPerSecond)}/s at random in a ${formatBytes(runner.guest.workingSetBytes)} working set `
      + `(filled at boot); each NIC receives ${formatCount(w.packetsPerSecond)} packets/s into its ring in guest RAM`,
  };
}
