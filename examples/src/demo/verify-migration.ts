// Checking the destination against the source after a migration: SHA-256 over every RAM block
// on each side, and each NIC's device state (the device model's saved state on each SimHost).

import { createHash } from 'node:crypto';
import { ramHash } from '@vmmkit/sim';
import type { VerificationRecord } from '../report/migration-record.js';
import { DEMO_NICS, type DemoPair } from './demo-pair.js';

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** Compare both ends of `pair` (after the migration: the source paused, the destination running). */
export function verifyMigration(pair: DemoPair): VerificationRecord {
  // The same hash the CLI prints at both ends of a migration.
  const source = ramHash(pair.source.vm.vmm.memory);
  const destination = ramHash(pair.destination.vm.vmm.memory);
  const devices = DEMO_NICS.map((nic) => {
    const before = pair.source.host.deviceState(nic.host);
    const after = pair.destination.host.deviceState(nic.host);
    return {
      name: nic.name, host: nic.host, bytes: before.byteLength,
      source: sha256(before), destination: sha256(after), equal: Buffer.from(before).equals(after),
    };
  });
  const ram = { source, destination, equal: source === destination };
  return { ram, devices, ok: ram.equal && devices.every((d) => d.equal) };
}
