// Both ends of a migration in one process: the source VMM and a destination VMM created with
// `incoming: true`, joined by an in-process transport pair.

import type { Vmm } from '@vmmkit/core';
import { transportPair } from '../stream/transport-pair.js';
import { migrateIncoming } from './incoming.js';
import type { MigrationOptions, MigrationResult } from './migration-options.js';
import { migrateOutgoing } from './outgoing.js';

/**
 * Live-migrate `source` into `destination` (paused, with the same RAM layout and devices).
 * Resolves when the destination runs the guest; the source is then paused, ready to close.
 * @throws the source's error when the migration fails (the source runs on), else the
 *   destination's (it failed to start after the handover).
 */
export async function migrate(source: Vmm, destination: Vmm, options: MigrationOptions = {}): Promise<MigrationResult> {
  const [out, into] = transportPair();
  const [sent, received] = await Promise.allSettled([migrateOutgoing(source, out, options), migrateIncoming(destination, into)]);
  if (sent.status === 'rejected') throw sent.reason;
  if (received.status === 'rejected') throw received.reason;
  return sent.value;
}
