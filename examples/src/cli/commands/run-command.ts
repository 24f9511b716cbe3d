// `vmmkit run`: compose a VM, say what it is and how it would migrate, optionally receive it from
// a migration source first, then run it until SIGINT/SIGTERM or --duration.

import { planMigration } from '@vmmkit/migration';
import type { VmArgs } from '../args/command-line.js';
import type { CliIo } from '../cli-io.js';
import { EXIT_OK } from '../exit-codes.js';
import { openHost } from '../vm/cli-host.js';
import { composeVm } from '../vm/compose-vm.js';
import { describeDevices, describePlan } from '../vm/describe-vm.js';
import { GuestLoad } from '../vm/guest-load.js';
import { waitFor, watchInterrupt } from '../vm/interrupt.js';
import { withVm } from '../vm/with-vm.js';
import { receiveMigration } from './receive-migration.js';

/** What `run` was given. */
export interface RunOptions {
  readonly vm: VmArgs;
  /** Wait for an incoming migration on this URI first (the VM is created paused). */
  readonly incoming?: string;
  /** Stop after this long (after the migration arrived, with `incoming`); default: on a signal. */
  readonly durationMs?: number;
}

/** Run the VM; exit status 0 once it was closed after a signal or the duration. */
export async function runCommand(options: RunOptions, io: CliIo): Promise<number> {
  const host = openHost(options.vm.sim);
  const interrupt = watchInterrupt(io);
  try {
    const vmm = await composeVm(host, options.vm, options.incoming !== undefined);
    return await withVm(vmm, async () => {
      for (const line of [...describeDevices(vmm), ...describePlan(planMigration(vmm))]) io.out(line);
      const load = GuestLoad.of(vmm, host);
      if (options.incoming !== undefined) {
        if (!(await receiveMigration(vmm, options.incoming, io, interrupt.signal))) {
          io.out(`${String(interrupt.signal.reason)}: stopping before a migration arrived`);
          return EXIT_OK;
        }
        load?.resume();
      } else load?.start();
      const seconds = options.durationMs !== undefined ? `for ${options.durationMs / 1000} s` : 'until SIGINT or SIGTERM';
      io.out(`running ${seconds}${load ? ' (the guest is at work)' : ''}`);
      const why = await waitFor(options.durationMs, interrupt.signal);
      load?.stop();
      io.out(why === 'elapsed' ? 'duration elapsed: stopping' : `${String(interrupt.signal.reason)}: stopping`);
      return EXIT_OK;
    });
  } finally {
    interrupt.dispose();
  }
}
