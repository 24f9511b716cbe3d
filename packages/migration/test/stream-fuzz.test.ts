// Seeded stream fuzzing, bounded in time: a real migration's stream (a busy guest, a nic with
// precopy and stop-copy data) is recorded once, then copies cut at every record boundary, cut
// inside records, and with 1-4 bits flipped are replayed into fresh destinations. Each one either
// refuses with a typed error (guest paused, census back at its baseline) or ends with a guest
// identical to the source's; none hangs (the stream ends, and an idle timeout bounds each wait).
// Set VMMKIT_FUZZ_SEED to explore other seeds; a failure names the case to replay.

import { HostError, VmmError } from '@vmmkit/core';
import { SimHost } from '@vmmkit/sim';
import { NIC_A, ramHash, simMachine } from '@vmmkit/sim/testing';
import { describe, expect, it } from 'vitest';
import { MigrationFailedError, MigrationStreamError } from '../src/index.js';
import { freshDestination, recordMigration, replay, type RecordMark } from './stream-replay.js';

const SEED = Number(process.env['VMMKIT_FUZZ_SEED'] ?? 0x5eed_2024) >>> 0;
const UNIFORM_FLIPS = 120;
const HEAD_FLIPS = 80;

/** xorshift32, seeded: the same cases every run of one seed. */
function random(seed: number): (n: number) => number {
  let x = seed || 1;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

interface Case {
  readonly label: string;
  readonly bytes: Uint8Array;
}

const recording = await recordMigration();
const { bytes, records } = recording;
const next = random(SEED);

const cutAt = (at: number, why: string): Case => ({ label: `cut at ${at} (${why})`, bytes: bytes.subarray(0, at) });

/** Cuts at every record boundary (the preamble's end included) and at the very start. */
const boundaries: Case[] = [cutAt(0, 'nothing sent'), ...records.map((r) => cutAt(r.offset, `before ${r.name} at ${r.offset}`))];

/** A cut inside each record: in its header, or (where it has a body) at a random point of that. */
const insides: Case[] = records.map((r) => r.size > 8 && next(2) === 1
  ? cutAt(r.offset + 8 + next(r.size - 8), `inside the body of ${r.name} at ${r.offset}`)
  : cutAt(r.offset + 1 + next(7), `inside the header of ${r.name} at ${r.offset}`));

/** 1 to 4 bits flipped: anywhere in the stream, or in the first 64 bytes of one record. */
function flipped(where: () => number, why: string): Case {
  const copy = bytes.slice();
  const bits = 1 + next(4);
  const at: number[] = [];
  for (let i = 0; i < bits; i++) {
    const bit = where();
    copy[bit >>> 3]! ^= 1 << (bit & 7);
    at.push(bit);
  }
  return { label: `${bits} bit(s) flipped (${why}): bits ${at.join(', ')}`, bytes: copy };
}

const inHead = (r: RecordMark) => () => r.offset * 8 + next(Math.min(64, r.size) * 8);
const flips: Case[] = [
  ...Array.from({ length: UNIFORM_FLIPS }, () => flipped(() => next(bytes.byteLength * 8), 'anywhere')),
  ...Array.from({ length: HEAD_FLIPS }, () => {
    const r = records[next(records.length)]!;
    return flipped(inHead(r), `in the head of ${r.name} at ${r.offset}`);
  }),
];

const host = new SimHost(simMachine());
const outcomes = { refused: 0, identical: 0 };

/** Replay `c` into a fresh destination and hold it to the rule. */
async function check(c: Case): Promise<void> {
  const destination = await freshDestination(host);
  const baseline = host.census();
  const replayed = await replay(c.bytes, destination, { idleTimeoutMs: 2000 });
  try {
    if ('error' in replayed) {
      expectTyped(replayed.error, c.label);
      expect(destination.running, c.label).toBe(false);
      expect(host.census(), c.label).toEqual(baseline);
      outcomes.refused++;
    } else {
      expect(ramHash(destination.memory), c.label).toBe(recording.ramHash);
      expect(Buffer.compare(host.deviceState(NIC_A), recording.deviceState), c.label).toBe(0);
      outcomes.identical++;
    }
  } finally {
    await destination.close();
  }
}

/**
 * A MigrationFailedError whose causes are all typed: vmmkit's errors down to the host port's
 * (whose own cause is the host's business), or a refused payload's (which keeps the decoder's).
 */
function expectTyped(error: unknown, label: string): void {
  expect(error, label).toBeInstanceOf(MigrationFailedError);
  for (let e: unknown = (error as Error).cause; e !== undefined; e = (e as Error).cause) {
    expect(e instanceof VmmError || e instanceof HostError, `${label}: ${String(e)}`).toBe(true);
    if (e instanceof HostError || (e instanceof MigrationStreamError && e.fault === 'bad-payload')) break;
  }
}

const hex = `0x${SEED.toString(16)}`;
describe(`stream fuzzing, seed ${hex}, a ${bytes.byteLength}-byte stream of ${records.length} records`, () => {
  it(`${boundaries.length} cuts at record boundaries are refused; the whole stream migrates`, async () => {
    for (const c of boundaries) await check(c);
    expect(outcomes.refused).toBe(boundaries.length);
    await check({ label: 'the whole stream', bytes });
    expect(outcomes.identical).toBe(1);
  }, 30_000);

  it(`${insides.length} cuts inside records are refused`, async () => {
    const refused = outcomes.refused;
    for (const c of insides) await check(c);
    expect(outcomes.refused - refused).toBe(insides.length);
  }, 30_000);

  it(`${flips.length} copies with 1-4 bits flipped (${UNIFORM_FLIPS} anywhere, ${HEAD_FLIPS} in record heads) are refused or migrate the identical guest`, async () => {
    const before = { ...outcomes };
    for (const c of flips) await check(c);
    const refused = outcomes.refused - before.refused;
    // Most flips land in page data: refused unless the page was sent again later.
    expect(refused + outcomes.identical - before.identical).toBe(flips.length);
    expect(refused).toBeGreaterThan(flips.length / 2);
  }, 60_000);
});
