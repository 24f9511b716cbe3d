// The migration plugin: the VM reports its migration blockers as devices come and go (QEMU's
// migrate_add_blocker at realize), so that a VMM can show them before anyone tries to migrate.

import type { DependencyContainer } from 'tsyringe';
import { VmmEventBus, VmmInstance, token, type VmmPlugin } from '@vmmkit/core';
import { planMigration, type MigrationBlocker } from './plan/migration-plan.js';
import { MigrationParameters } from './migrate/migration-parameters.js';

/** Registered by the plugin: a VMM composed without it cannot migrate. */
export interface MigrationSupport {
  /** The blockers as of the last device change. */
  readonly blockers: readonly MigrationBlocker[];
}
export const MigrationSupport = token<MigrationSupport>('migration.support');

/** Live migration for the VM (use it on the source and on the destination). */
export function migrationPlugin(): VmmPlugin {
  return {
    name: 'migration',
    register(container: DependencyContainer) {
      const support = { blockers: [] as readonly MigrationBlocker[] };
      const events = container.resolve(VmmEventBus);
      const update = (): void => {
        const blockers = planMigration(container.resolve(VmmInstance)).blockers;
        if (sameBlockers(blockers, support.blockers)) return;
        support.blockers = blockers;
        events.emit('migration:blockers-changed', { blockers });
      };
      events.on('device:realized', update);
      events.on('device:unrealized', update);
      container.register(MigrationSupport, { useValue: support });
      container.register(MigrationParameters, { useValue: new MigrationParameters() });
    },
  };
}

function sameBlockers(a: readonly MigrationBlocker[], b: readonly MigrationBlocker[]): boolean {
  return a.length === b.length && a.every((x, i) => x.reason === b[i]!.reason && x.device === b[i]!.device);
}
