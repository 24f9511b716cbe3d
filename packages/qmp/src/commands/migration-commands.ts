// Live migration (qapi/migration.json): migrate, migrate-incoming, migrate_cancel, query-migrate,
// the parameters (downtime-limit, max-bandwidth) and capabilities (events). The migration runs
// in the background; the command answers once it started, and query-migrate and the MIGRATION
// events tell how it goes.

import { connectMigration, listenMigration, migrateIncoming, migrateOutgoing, planMigration, type SocketAddress } from '@vmmkit/migration';
import type { Vmm } from '@vmmkit/core';
import type { QmpCommand } from '../protocol/qmp-command.js';
import { genericError } from '../protocol/qmp-error.js';
import { migrationAddress } from './migration-address.js';
import { untilAborted } from './until-aborted.js';

/** How long `migrate` waits for the destination to accept the connection. */
const CONNECT_TIMEOUT_MS = 10_000;

const CHANNELS = { list: 'any' } as const;

export const migrate: QmpCommand = {
  name: 'migrate',
  // QEMU 11.1's: `detach` is gone (migrate always returns at once).
  args: { '*uri': 'str', '*channels': CHANNELS, '*resume': 'bool' },
  run: (args, { vmm, server }) => {
    const address = migrationAddress('migrate', args, 'connect');
    if (args.resume === true) throw genericError("Parameter 'resume': vmmkit has no postcopy migration to resume");
    if (server.migration.running || vmm.migration) throw genericError("There's a migration process in progress");
    if (server.runState.status === 'inmigrate') throw genericError('Guest is waiting for an incoming migration');
    // As QEMU: a blocked VM fails here, before anything is connected.
    const { blockers } = planMigration(vmm);
    if (blockers.length > 0) throw genericError(blockers.map((b) => b.reason).join('; '));
    server.migration.start('outgoing', (signal) => outgoing(vmm, address, signal));
    return {};
  },
};

async function outgoing(vmm: Vmm, address: SocketAddress, signal: AbortSignal): Promise<void> {
  const transport = await untilAborted(connectMigration(address, { timeoutMs: CONNECT_TIMEOUT_MS }), signal, (t) => t.destroy());
  await migrateOutgoing(vmm, transport, { signal });
}

export const migrateIncomingCommand: QmpCommand = {
  name: 'migrate-incoming',
  args: { '*uri': 'str', '*channels': CHANNELS, '*exit-on-error': 'bool' },
  run: async (args, { vmm, server }) => {
    const address = migrationAddress('migrate-incoming', args, 'listen');
    if (server.incoming === undefined) throw genericError("'-incoming' was not specified on the command line");
    // After a failed attempt (exit-on-error off) the guest still waits here, and may be sent again.
    if (server.incoming !== 'defer' || server.runState.status !== 'inmigrate' || server.migration.running) {
      throw genericError('The incoming migration has already been started');
    }
    const exitOnError = args['exit-on-error'] !== false;
    // Listening errors (address in use) are the command's; what follows is the migration's.
    const listener = await listenMigration(address);
    server.migration.start('incoming', async (signal) => {
      try {
        const transport = await untilAborted(listener.accept(), signal, (t) => t.destroy());
        server.migration.activate();
        await migrateIncoming(vmm, transport, { signal });
      } catch (e) {
        if (exitOnError) server.incomingFailed(e);
        throw e;
      } finally {
        await listener.close();
      }
    }, listener.address);
    return {};
  },
};

export const migrateCancel: QmpCommand = {
  name: 'migrate_cancel',
  args: {},
  run: (_args, { server }) => {
    server.migration.cancel();
    return {};
  },
};

export const queryMigrate: QmpCommand = {
  name: 'query-migrate',
  args: {},
  run: (_args, { vmm, server }) => {
    const info = server.migration.info();
    const { blockers } = planMigration(vmm);
    return blockers.length > 0 ? { ...info, 'blocked-reasons': blockers.map((b) => b.reason) } : info;
  },
};

export const MIGRATION_COMMANDS: readonly QmpCommand[] = [migrate, migrateIncomingCommand, migrateCancel, queryMigrate];
