// Checking the destination against the source after a migration: SHA-256 over every RAM block
// on each side, and each NIC's device state (the device model's saved state on each SimHost).
// A KVM destination's guest runs on at once: its side is the state it started with.

import { createHash } from 'node:crypto';
import { ramHash } from '@vmmkit/sim';
import type { VerificationRecord } from '../report/migration-record.js';
import { DEMO_NICS, type DemoPair } from './demo-pair.js';

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** Compare both ends of `pair` (after the migration: the source paused, the destination running). */
export function verifyMigration(pair: DemoPair): VerificationRecord {
  // The same hash the CLI prints at both ends of a migration.
  const source = ramHash(pair.source.vm.vmm.memory);
  const started = pair.kvm?.atStart();
  const destination = started ? started.ram : ramHash(pair.destination.vm.vmm.memory);
  const devices = DEMO_NICS.map((nic) => {
    const before = pair.source.sim.deviceState(nic.host);
    const after = started ? started.devices.get(nic.host) ?? '' : sha256(pair.destination.sim.deviceState(nic.host));
    return { name: nic.name, host: nic.host, bytes: before.byteLength, source: sha256(before), destination: after, equal: sha256(before) === after };
  });
  const ram = { source, destination, equal: source === destination };
  return { ram, devices, ok: ram.equal && devices.every((d) => d.equal) };
}
