// Reading one RAM channel connection (in the thread that owns the migration or in a worker): the
// CHANNEL record that says which channel it is, then RAM records applied into guest RAM as they
// come, each pass ended by a SYNC that waits until the receiver lets the channels go on.

import type { GuestMemory } from '@vmmkit/core';
import { applyRamRecord } from './ram-pages.js';
import type { RamRecord } from './records.js';
import type { MigrationStreamReader } from './stream-reader.js';
import { MigrationRefusedError } from '../migration-errors.js';

/** What the destination accounts of a RAM record it applied (a RamRecord is one). */
export interface AppliedRamRecord {
  readonly name: 'RAM_PAGES' | 'RAM_ZERO';
  readonly block: number;
  readonly first: number;
  readonly count: number;
  /** The stream offset of the record. */
  readonly offset: number;
  /** RAM_PAGES with checksums: the pages whose data did not match their digest. */
  readonly corruptPages?: readonly number[];
}

/** How a channel connection's reader reports to the receiver that coordinates the channels. */
export interface RamChannelHooks {
  /** The connection said it is `channel`; throws if another connection claimed it already. */
  claim(channel: number): void;
  /** A RAM record was applied into guest RAM. */
  applied(record: AppliedRamRecord): void;
  /**
   * The channel ended pass `pass` (SYNC): resolves when every channel has, with whether it was
   * the last pass; rejects on failure.
   */
  arrived(pass: number): Promise<boolean>;
  /** The channel's stream ended after pass `pass` (its last SYNC). */
  ended(pass: number): void;
}

/**
 * Read connection `connection` of a receiver with `channels` channels to its end, applying its
 * RAM records into `memory`.
 * @throws MigrationRefusedError for a connection that is not a channel of this receiver or breaks
 *   the channel's order; the reader's errors (stream, transport, timeout) as they come.
 */
export async function readRamChannel(reader: MigrationStreamReader, memory: GuestMemory, connection: number, channels: number, hooks: RamChannelHooks): Promise<void> {
  // Connections may be accepted in any order: CHANNEL says which channel each one is.
  const first = await reader.expectNext();
  if (first.name !== 'CHANNEL') throw new MigrationRefusedError(`RAM channel connection ${connection} opened with a ${first.name} record, not CHANNEL`);
  const channel = first.channel;
  if (first.channels !== channels || channel >= channels) {
    throw new MigrationRefusedError(`RAM channel connection ${connection} says it is channel ${channel} of ${first.channels}; this destination has ${channels}`);
  }
  hooks.claim(channel);
  let pass: number | undefined;
  let inPass = false;
  for (;;) {
    const record = await reader.next();
    if (!record) {
      if (inPass || pass === undefined) throw new MigrationRefusedError(`RAM channel ${channel} ended ${pass === undefined ? 'before its first SYNC' : `inside the pass after ${pass}`}`);
      reader.stop();
      hooks.ended(pass);
      return;
    }
    switch (record.name) {
      case 'RAM_PAGES':
      case 'RAM_ZERO':
        applyRamRecord(memory, record as RamRecord);
        hooks.applied(record as RamRecord);
        inPass = true;
        break;
      case 'SYNC':
        if (pass !== undefined && record.pass !== pass + 1) {
          throw new MigrationRefusedError(`RAM channel ${channel}: SYNC of pass ${record.pass} at offset ${record.offset} after pass ${pass}`);
        }
        pass = record.pass;
        inPass = false;
        if (await hooks.arrived(pass)) {
          // The last pass: what follows is not read as records (a RAM record would be received
          // into guest RAM as it is read), only checked to be nothing.
          if (!(await reader.atEnd())) throw new MigrationRefusedError(`RAM channel ${channel}: more after the last pass (${pass})`);
          reader.stop();
          hooks.ended(pass);
          return;
        }
        break;
      default:
        throw new MigrationRefusedError(`RAM channel ${channel}: ${record.name} record at offset ${record.offset} (a channel carries RAM_PAGES, RAM_ZERO and SYNC)`);
    }
  }
}
