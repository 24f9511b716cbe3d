// The destination's part of `run --incoming URI`: listen, accept one source, receive the guest,
// and report what arrived with the SHA-256 of guest RAM taken before the guest runs a step here.

import type { Vmm } from '@vmmkit/core';
import { listenMigration, MAX_CHANNELS, migrateIncoming } from '@vmmkit/migration';
import { ramHash } from '@vmmkit/sim';
import type { CliIo } from '../cli-io.js';
import { formatBytes } from '../../report/format.js';
import { ramHashAtStart } from '../vm/kvm-guest.js';
import { unlessInterrupted } from '../vm/interrupt.js';

/**
 * Receive a migration into the paused `vmm`. Resolves true once the guest runs here, false when
 * interrupted before a source connected.
 * @throws MigrationTransportError when it cannot listen; MigrationFailedError when the migration
 *   fails (also when interrupted during it).
 */
export async function receiveMigration(vmm: Vmm, uri: string, io: CliIo, signal: AbortSignal): Promise<boolean> {
  // The main connection, and as many RAM channels as a source may bring beside it.
  const listener = await listenMigration(uri, { connections: 1 + MAX_CHANNELS });
  try {
    // Tests and scripts read this line for the port when they asked for port 0.
    io.out(`listening for a migration on ${listener.name}`);
    const transport = await unlessInterrupted(listener.accept(), signal);
    if (!transport) return false;
    io.out('migration: a source connected, receiving');
    // Dropping the connection makes the migration fail cleanly: the guest never starts here.
    const drop = (): void => transport.destroy();
    signal.addEventListener('abort', drop, { once: true });
    let result;
    try {
      // A source with RAM channels connects them after the main stream; SETUP says how many.
      result = await migrateIncoming(vmm, transport, { acceptChannel: () => listener.accept() });
    } finally {
      signal.removeEventListener('abort', drop);
    }
    // The guest runs from here on: hash now, before any of its work lands in RAM (vCPUs on KVM
    // started with the VM: their guest's RAM was hashed just before).
    const hash = ramHashAtStart(vmm) ?? ramHash(vmm.memory);
    io.out(
      `migration received: ${result.pages} pages, ${result.zeroPages} zero pages, ` +
        `device state ${formatBytes(result.deviceBytes)}, ${formatBytes(result.bytesReceived)} in total`,
    );
    io.out(`guest RAM sha256 ${hash}`);
    return true;
  } finally {
    await listener.close();
  }
}
