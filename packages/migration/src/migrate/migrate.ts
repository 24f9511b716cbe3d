// Both ends of a migration in one process: the source VMM and a destination VMM created with
// `incoming: true`, joined by an in-process transport pair.

import type { Vmm } from '@vmmkit/core';
import { transportPair } from '../stream/transport-pair.js';
import { migrateIncoming } from './incoming.js';
import { MAX_CHANNELS, type MigrationOptions, type MigrationResult } from './migration-options.js';
import { migrateOutgoing } from './outgoing.js';

/**
 * Live-migrate `source` into `destination` (paused, with the same RAM layout and devices).
 * Resolves when the destination runs the guest; the source is then paused, ready to close.
 * @throws the source's error when the migration fails (the source runs on), else the
 *   destination's (it failed to start after the handover).
 */
export async function migrate(source: Vmm, destination: Vmm, options: MigrationOptions = {}): Promise<MigrationResult> {
  const [out, into] = transportPair();
  // RAM channels (options.channels), each a pair of its own; a bad count is the source's ConfigError.
  const count = Number.isSafeInteger(options.channels) && options.channels! > 0 && options.channels! <= MAX_CHANNELS ? options.channels! : 0;
  const pairs = Array.from({ length: count }, (_, i) => transportPair({ names: [`pair:channel${i}:source`, `pair:channel${i}:destination`] }));
  const [sent, received] = await Promise.allSettled([
    migrateOutgoing(source, { main: out, channels: pairs.map(([s]) => s) }, options),
    migrateIncoming(destination, { main: into, channels: pairs.map(([, d]) => d) }),
  ]);
  if (sent.status === 'rejected') throw sent.reason;
  if (received.status === 'rejected') throw received.reason;
  return sent.value;
}
