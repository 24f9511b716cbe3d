// `vmmkit migrate URI`: compose the same VM as the destination's, let the guest work a moment,
// migrate it to the destination, and print the progress, the result and the hash of guest RAM
// at switchover.

import { connectMigration, MigrationBlockedError, migrateOutgoing, planMigration, type MigrationTransport } from '@vmmkit/migration';
import { ramHash } from '@vmmkit/sim';
import type { MigrateParameters, VmArgs } from '../args/command-line.js';
import type { CliIo } from '../cli-io.js';
import { EXIT_FAILURE, EXIT_OK } from '../exit-codes.js';
import { openHost } from '../vm/cli-host.js';
import { composeVm } from '../vm/compose-vm.js';
import { describeDevices, describePlan } from '../vm/describe-vm.js';
import { GuestLoad } from '../vm/guest-load.js';
import { waitFor, watchInterrupt } from '../vm/interrupt.js';
import { withVm } from '../vm/with-vm.js';
import { describeResult, followMigration } from './migration-report.js';

/** How long the guest works before the migration starts, so that there is something to track. */
const WARM_UP_MS = 200;
/** How long to wait for the destination to accept the connection. */
const CONNECT_TIMEOUT_MS = 10_000;

/** What `migrate` was given. */
export interface MigrateOptions {
  readonly uri: string;
  readonly vm: VmArgs;
  readonly parameters: MigrateParameters;
}

/**
 * Migrate; exit status 0 when the destination runs the guest.
 * @throws MigrationBlockedError before connecting when the VM cannot migrate;
 *   MigrationTransportError when the destination cannot be reached; MigrationFailedError.
 */
export async function migrateCommand(options: MigrateOptions, io: CliIo): Promise<number> {
  const host = openHost(options.vm.sim);
  const interrupt = watchInterrupt(io);
  try {
    const vmm = await composeVm(host, options.vm);
    return await withVm(vmm, async () => {
      const plan = planMigration(vmm);
      for (const line of [...describeDevices(vmm), ...describePlan(plan)]) io.out(line);
      // As QEMU's migrate command: a blocked VM fails before anything is connected.
      if (plan.blockers.length > 0) throw new MigrationBlockedError(plan.blockers);
      const load = GuestLoad.of(vmm, host);
      load?.start();
      try {
        if ((await waitFor(WARM_UP_MS, interrupt.signal)) === 'interrupted') {
          io.err(`vmmkit: ${String(interrupt.signal.reason)}: not migrating`);
          return EXIT_FAILURE;
        }
        // The main stream first: the destination takes the first connection as the main one.
        const main = await connectMigration(options.uri, { timeoutMs: CONNECT_TIMEOUT_MS });
        const channels: MigrationTransport[] = [];
        try {
          for (let i = 0; i < (options.parameters.channels ?? 0); i++) channels.push(await connectMigration(options.uri, { timeoutMs: CONNECT_TIMEOUT_MS }));
        } catch (e) {
          for (const t of [main, ...channels]) t.destroy();
          throw e;
        }
        const transport = channels.length > 0 ? { main, channels } : main;
        io.out(`migrating to ${options.uri}${channels.length > 0 ? ` with ${channels.length} RAM channel(s)` : ''}`);
        const unfollow = followMigration(vmm, io);
        try {
          const result = await migrateOutgoing(vmm, transport, { ...options.parameters, signal: interrupt.signal });
          for (const line of describeResult(result)) io.out(line);
        } finally {
          unfollow();
        }
      } finally {
        load?.stop();
      }
      // The source stays paused after a successful migration: its RAM is the state at switchover.
      io.out(`guest RAM sha256 ${ramHash(vmm.memory)}`);
      return EXIT_OK;
    });
  } finally {
    interrupt.dispose();
  }
}
