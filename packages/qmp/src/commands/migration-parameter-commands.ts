// The migration's parameters and capabilities (qapi/migration.json): migrate-set-parameters /
// query-migrate-parameters (downtime-limit, max-bandwidth, where 0 means unlimited as in QEMU)
// and migrate-set-capabilities / query-migrate-capabilities (`events`).

import { migrationParameters } from '@vmmkit/migration';
import { VmmError } from '@vmmkit/core';
import type { QmpCommand } from '../protocol/qmp-command.js';
import { genericError } from '../protocol/qmp-error.js';
import { MIGRATION_CAPABILITIES, SUPPORTED_CAPABILITIES } from '../state/migration-state.js';

/** The largest max-bandwidth taken: the largest integer a JSON number carries exactly here (QEMU's own bound is larger). */
const MAX_BANDWIDTH = Number.MAX_SAFE_INTEGER;

export const migrateSetParameters: QmpCommand = {
  name: 'migrate-set-parameters',
  args: { '*downtime-limit': 'int', '*max-bandwidth': 'int' },
  run: (args, { vmm }) => {
    const downtime = args['downtime-limit'] as number | undefined;
    const bandwidth = args['max-bandwidth'] as number | undefined;
    if (downtime !== undefined && (downtime < 0 || downtime > 2_000_000)) {
      throw genericError("Parameter 'downtime-limit' expects an integer in the range of 0 to 2000000 milliseconds");
    }
    if (bandwidth !== undefined && (bandwidth < 0 || bandwidth > MAX_BANDWIDTH)) {
      throw genericError(`Parameter 'max-bandwidth' expects an integer in the range of 0 to ${MAX_BANDWIDTH} bytes/second`);
    }
    try {
      migrationParameters(vmm).set({
        ...(downtime !== undefined && { downtimeLimitMs: downtime }),
        ...(bandwidth !== undefined && { maxBandwidth: bandwidth === 0 ? undefined : bandwidth }),
      });
    } catch (e) {
      throw e instanceof VmmError ? genericError(e.message, { cause: e }) : e;
    }
    return {};
  },
};

export const queryMigrateParameters: QmpCommand = {
  name: 'query-migrate-parameters',
  args: {},
  run: (_args, { vmm }) => {
    const values = migrationParameters(vmm).values;
    return { 'downtime-limit': values.downtimeLimitMs, 'max-bandwidth': values.maxBandwidth ?? 0 };
  },
};

export const migrateSetCapabilities: QmpCommand = {
  name: 'migrate-set-capabilities',
  args: { capabilities: { list: { struct: { capability: { enum: MIGRATION_CAPABILITIES }, state: 'bool' } } } },
  run: (args, { server }) => {
    const wanted = args.capabilities as { capability: string; state: boolean }[];
    if (server.migration.running) throw genericError("There's a migration process in progress");
    for (const { capability, state } of wanted) {
      if (state && !SUPPORTED_CAPABILITIES.has(capability)) throw genericError(`Parameter 'capability': vmmkit does not support migration capability '${capability}'`);
    }
    for (const { capability, state } of wanted) {
      if (state) server.migration.capabilities.add(capability);
      else server.migration.capabilities.delete(capability);
    }
    return {};
  },
};

export const queryMigrateCapabilities: QmpCommand = {
  name: 'query-migrate-capabilities',
  args: {},
  run: (_args, { server }) => MIGRATION_CAPABILITIES.map((capability) => ({ capability, state: server.migration.capabilities.has(capability) })),
};

export const MIGRATION_PARAMETER_COMMANDS: readonly QmpCommand[] = [migrateSetParameters, queryMigrateParameters, migrateSetCapabilities, queryMigrateCapabilities];
