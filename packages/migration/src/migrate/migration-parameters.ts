// The VM's migration parameters (QEMU's MigrationParameters, set with migrate-set-parameters):
// what an outgoing migration uses where its own options say nothing. They are the one owner of
// these values: a running migration reads the downtime limit at every precopy decision and the
// bandwidth limit while it waits to send, so a change applies to it (as QEMU's
// migrate_params_apply does) within a decision or a few milliseconds.

import { ConfigError, type Vmm } from '@vmmkit/core';

/** The parameters, with the values a migration uses. */
export interface MigrationParameterValues {
  /** The longest the guest may be paused at switchover, in ms (downtime-limit). */
  readonly downtimeLimitMs: number;
  /** At most this many bytes per second on the stream (max-bandwidth); undefined: unlimited. */
  readonly maxBandwidth: number | undefined;
  /** Precopy iterations before switching over even if the downtime limit is not met. */
  readonly maxIterations: number;
}

/** QEMU's upper bound of downtime-limit (MAX_MIGRATE_DOWNTIME, 2000 s). */
export const MAX_DOWNTIME_LIMIT_MS = 2_000_000;

/** The defaults: QEMU's 300 ms downtime limit, an unlimited stream, 30 iterations. */
export const DEFAULT_MIGRATION_PARAMETERS: MigrationParameterValues = { downtimeLimitMs: 300, maxBandwidth: undefined, maxIterations: 30 };

/**
 * One VM's parameters; migrationPlugin() registers them (the class is its own injection token),
 * read them with {@link migrationParameters}.
 */
export class MigrationParameters {
  #values: MigrationParameterValues = DEFAULT_MIGRATION_PARAMETERS;

  get values(): MigrationParameterValues {
    return this.#values;
  }

  /**
   * Change some parameters; all are checked before any changes.
   * @throws ConfigError naming the parameter and the value when one is out of range.
   */
  set(change: Partial<MigrationParameterValues>): void {
    const { downtimeLimitMs, maxBandwidth, maxIterations } = change;
    if (downtimeLimitMs !== undefined && !(Number.isInteger(downtimeLimitMs) && downtimeLimitMs >= 0 && downtimeLimitMs <= MAX_DOWNTIME_LIMIT_MS)) {
      throw new ConfigError(`downtimeLimitMs must be an integer from 0 to ${MAX_DOWNTIME_LIMIT_MS} ms, got ${downtimeLimitMs}`, 'downtimeLimitMs', String(downtimeLimitMs));
    }
    if (maxBandwidth !== undefined && !(maxBandwidth > 0 && Number.isFinite(maxBandwidth))) {
      throw new ConfigError(`maxBandwidth must be a positive number of bytes per second, got ${maxBandwidth}`, 'maxBandwidth', String(maxBandwidth));
    }
    if (maxIterations !== undefined && !(Number.isInteger(maxIterations) && maxIterations >= 1)) {
      throw new ConfigError(`maxIterations must be a positive integer, got ${maxIterations}`, 'maxIterations', String(maxIterations));
    }
    // `maxBandwidth: undefined` given explicitly means unlimited again.
    this.#values = { ...this.#values, ...definedOnly(change), ...('maxBandwidth' in change && { maxBandwidth }) };
  }
}

/**
 * The migration parameters of `vmm`.
 * @throws ConfigError when the VM was composed without migrationPlugin().
 */
export function migrationParameters(vmm: Vmm): MigrationParameters {
  if (!vmm.container.isRegistered(MigrationParameters, true)) {
    throw new ConfigError(`VMM '${vmm.name}' was composed without migrationPlugin()`, 'plugins');
  }
  return vmm.container.resolve(MigrationParameters);
}

function definedOnly(change: Partial<MigrationParameterValues>): Partial<MigrationParameterValues> {
  return Object.fromEntries(Object.entries(change).filter(([, v]) => v !== undefined));
}
