// `vmmkit run`: compose a VM, say what it is and how it would migrate, optionally receive it from
// a migration source first, then run it until SIGINT/SIGTERM, QMP quit, or --duration. With
// --qmp, a QMP server drives it meanwhile (devices, objects, run state, migration).

import { planMigration } from '@vmmkit/migration';
import type { Vmm } from '@vmmkit/core';
import type { VmArgs } from '../args/command-line.js';
import type { CliIo } from '../cli-io.js';
import { EXIT_FAILURE, EXIT_OK } from '../exit-codes.js';
import { openHost } from '../vm/cli-host.js';
import { composeVm } from '../vm/compose-vm.js';
import { describeDevices, describePlan } from '../vm/describe-vm.js';
import { GuestLoad } from '../vm/guest-load.js';
import { waitFor, watchInterrupt } from '../vm/interrupt.js';
import { startQmp, type QmpControl } from '../vm/qmp-control.js';
import { withVm } from '../vm/with-vm.js';
import { receiveMigration } from './receive-migration.js';

/** What `run` was given. */
export interface RunOptions {
  readonly vm: VmArgs;
  /**
   * Wait for an incoming migration on this URI first (the VM is created paused); `defer`: wait
   * for QMP's migrate-incoming to say where.
   */
  readonly incoming?: string;
  /** Stop after this long (after the migration arrived, with `incoming`); default: on a signal. */
  readonly durationMs?: number;
  /** Serve QMP on this Unix socket path. */
  readonly qmp?: string;
}

/** Run the VM; exit status 0 once it was closed after a signal, QMP quit or the duration. */
export async function runCommand(options: RunOptions, io: CliIo): Promise<number> {
  const host = openHost(options.vm.sim);
  const interrupt = watchInterrupt(io);
  try {
    const vmm = await composeVm(host, options.vm, options.incoming !== undefined);
    return await withVm(vmm, async () => {
      for (const line of [...describeDevices(vmm), ...describePlan(planMigration(vmm))]) io.out(line);
      const qmp = options.qmp === undefined ? undefined : await startQmp(vmm, options.qmp, incomingMode(options.incoming), io);
      try {
        return await runVm(vmm, options, io, GuestLoad.of(vmm, host), interrupt.signal, qmp);
      } finally {
        await qmp?.close();
      }
    });
  } finally {
    interrupt.dispose();
  }
}

async function runVm(vmm: Vmm, options: RunOptions, io: CliIo, load: GuestLoad | undefined, interrupt: AbortSignal, qmp: QmpControl | undefined): Promise<number> {
  const stop = qmp ? AbortSignal.any([interrupt, qmp.signal]) : interrupt;
  if (options.incoming === 'defer') {
    // The guest's drivers come with the migration: it only goes on working once it arrived.
    vmm.events.once('migration:incoming-completed', () => load?.resume());
    io.out('waiting for migrate-incoming over QMP');
  } else if (options.incoming !== undefined) {
    if (!(await receiveMigration(vmm, options.incoming, io, stop))) {
      io.out(`${String(stop.reason)}: stopping before a migration arrived`);
      return EXIT_OK;
    }
    load?.resume();
  } else await load?.start();
  const seconds = options.durationMs !== undefined ? `for ${options.durationMs / 1000} s` : `until SIGINT or SIGTERM${qmp ? ' or QMP quit' : ''}`;
  io.out(`running ${seconds}${load ? ' (the guest is at work)' : ''}`);
  const why = await waitFor(options.durationMs, stop);
  load?.stop();
  io.out(why === 'elapsed' ? 'duration elapsed: stopping' : `${String(stop.reason)}: stopping`);
  return qmp?.failed ? EXIT_FAILURE : EXIT_OK;
}

/** How QMP sees the VM wait for its migration. */
function incomingMode(incoming: string | undefined): 'defer' | 'started' | undefined {
  return incoming === undefined ? undefined : incoming === 'defer' ? 'defer' : 'started';
}
