// A migration with RAM channels fails as one with a single stream does: a lost channel, a hostile
// channel or channels the two sides do not agree on end it with a typed error, the source runs
// on as it was, the destination never starts and holds nothing; and the same VMs then migrate.

import { describe, expect, it } from 'vitest';
import { ConfigError } from '@vmmkit/core';
import { SimHost } from '@vmmkit/sim';
import { NIC_A, SimGuest, ramHash, simMachine } from '@vmmkit/sim/testing';
import {
  MigrationFailedError, MigrationRefusedError, MigrationStreamWriter, MigrationTransportError, migrate, migrateIncoming, migrateOutgoing,
  transportPair, type MigrationTransport,
} from '../src/index.js';
import { addNic, vmOn } from './machines.js';
import { relay, StreamWalk } from './stream-replay.js';

/** A source with a busy nic on iommufd, a matching incoming destination, and their census. */
async function pair() {
  const srcHost = new SimHost(simMachine());
  const dstHost = new SimHost(simMachine());
  const source = await vmOn(srcHost);
  const destination = await vmOn(dstHost, { incoming: true });
  const nic = await addNic(source, NIC_A, 'iommufd');
  await addNic(destination, NIC_A, 'iommufd');
  const workload = new SimGuest(source, srcHost, [{ nic, ring: 0x10_0000n }]);
  await workload.setUpNics();
  await workload.step();
  source.events.on('migration:iteration', () => void workload.step());
  return { srcHost, dstHost, source, destination, srcCensus: srcHost.census(), dstCensus: dstHost.census() };
}

type Pair = Awaited<ReturnType<typeof pair>>;

/** n channel pairs: [source ends, destination ends]. */
function channelPairs(n: number): [MigrationTransport[], MigrationTransport[]] {
  const pairs = Array.from({ length: n }, () => transportPair());
  return [pairs.map(([s]) => s), pairs.map(([, d]) => d)];
}

/** Both sides failed; the source runs on as it was; the destination did not start and holds nothing. */
async function expectFailedAndRolledBack(p: Pair, outcome: PromiseSettledResult<unknown>[]): Promise<MigrationFailedError[]> {
  const errors = outcome.map((o) => (o as PromiseRejectedResult).reason as MigrationFailedError);
  for (const e of errors) expect(e).toBeInstanceOf(MigrationFailedError);
  expect(p.source.running).toBe(true);
  expect(p.source.memory.logging).toBe(false);
  expect(p.srcHost.census()).toEqual(p.srcCensus);
  expect(p.destination.running).toBe(false);
  expect(p.dstHost.census()).toEqual(p.dstCensus);
  // And the same source then migrates, over channels, to a fresh destination.
  await p.destination.close();
  const fresh = await vmOn(p.dstHost, { incoming: true });
  await addNic(fresh, NIC_A, 'iommufd');
  await migrate(p.source, fresh, { maxIterations: 2, downtimeLimitMs: 0, channels: 2 });
  expect(ramHash(fresh.memory)).toBe(ramHash(p.source.memory));
  await fresh.close();
  await p.source.close();
  return errors;
}

// Each case migrates twice (the failure, then the retry) with a busy guest: more than the default 5 s on a loaded machine.
describe('a migration with RAM channels', { timeout: 30_000 }, () => {
  it('moves the guest over the channels, the main stream carrying no page', async () => {
    const p = await pair();
    // The main stream crosses a tap that counts its RAM records.
    const [out, wire] = transportPair();
    const [tap, into] = transportPair();
    const walk = new StreamWalk();
    let mainRam = 0;
    let mainRecords = 0;
    relay(wire, tap, (chunk) => {
      const marks = walk.feed(chunk);
      mainRecords += marks.length;
      mainRam += marks.filter((m) => m.name === 'RAM_PAGES' || m.name === 'RAM_ZERO').length;
    });
    const [sources, destinations] = channelPairs(2);
    const [sent, received] = await Promise.all([
      migrateOutgoing(p.source, { main: out, channels: sources }, { maxIterations: 2, downtimeLimitMs: 0, channels: 2 }),
      migrateIncoming(p.destination, { main: into, channels: destinations }),
    ]);
    expect(ramHash(p.destination.memory)).toBe(ramHash(p.source.memory));
    expect(received.pages).toBe(sent.pagesSent);
    expect(received.bytesReceived).toBe(sent.bytesSent);
    // The main stream's share: SETUP, device state and control records, no page.
    expect(mainRecords).toBeGreaterThan(3);
    expect(mainRam).toBe(0);
    expect(sent.pagesSent).toBeGreaterThan(0);
    await p.source.close();
    await p.destination.close();
  });

  it('refuses a channel count out of range, or channels that do not match it, before anything changes', async () => {
    const p = await pair();
    await expect(migrate(p.source, p.destination, { channels: 17 })).rejects.toThrow(ConfigError);
    await expect(migrate(p.source, p.destination, { channels: 1.5 })).rejects.toThrow(/channels must be a whole number from 0 to 16, got 1.5/);
    const [sources] = channelPairs(1);
    const [out] = transportPair();
    await expect(migrateOutgoing(p.source, { main: out, channels: sources }, { channels: 2 })).rejects.toThrow(/channels is 2 but 1 channel connection\(s\) were given/);
    // The connections given were the migration's: destroyed.
    await expect(sources[0]!.write([new Uint8Array(1)])).rejects.toBeInstanceOf(MigrationTransportError);
    expect(p.source.running).toBe(true);
    expect(p.srcHost.census()).toEqual(p.srcCensus);
    await p.source.close();
    await p.destination.close();
  });

  it('fails on both sides when a channel is lost during precopy', async () => {
    const p = await pair();
    const [out, into] = transportPair();
    const [sources, destinations] = channelPairs(3);
    p.source.events.on('migration:iteration', ({ iteration }) => {
      if (iteration === 2) destinations[1]!.destroy();
    });
    const outcome = await Promise.allSettled([
      migrateOutgoing(p.source, { main: out, channels: sources }, { maxIterations: 4, downtimeLimitMs: 0, channels: 3 }),
      migrateIncoming(p.destination, { main: into, channels: destinations }),
    ]);
    const [source, destination] = await expectFailedAndRolledBack(p, outcome);
    // The destination loses the channel; the source either does too or hears the refusal first.
    expect(destination!.cause).toBeInstanceOf(MigrationTransportError);
    expect([MigrationTransportError, MigrationRefusedError].some((c) => source!.cause instanceof c), String(source!.cause)).toBe(true);
  });

  it.for(['source', 'destination'] as const)('is cancelled on the %s during precopy: both sides fail, every channel closes', async (side) => {
    const p = await pair();
    const [out, into] = transportPair();
    const [sources, destinations] = channelPairs(2);
    const cancel = new AbortController();
    p.source.events.on('migration:iteration', ({ iteration }) => {
      if (iteration === 2) cancel.abort();
    });
    const outcome = await Promise.allSettled([
      migrateOutgoing(p.source, { main: out, channels: sources }, { maxIterations: 4, downtimeLimitMs: 0, channels: 2, ...(side === 'source' && { signal: cancel.signal }) }),
      migrateIncoming(p.destination, { main: into, channels: destinations }, side === 'destination' ? { signal: cancel.signal } : {}),
    ]);
    const errors = await expectFailedAndRolledBack(p, outcome);
    expect(String(errors[side === 'source' ? 0 : 1]!.cause)).toMatch(/cancelled/);
    for (const t of [...sources, ...destinations]) await expect(t.write([new Uint8Array(1)])).rejects.toBeInstanceOf(MigrationTransportError);
  });

  it('refuses a hostile channel (device data on a RAM channel) before GO', async () => {
    const p = await pair();
    const [out, into] = transportPair();
    const [sources, destinations] = channelPairs(2);
    // The destination's channel 1 comes from an impostor; the source's own channel 1 goes nowhere.
    const [impostor, hostile] = transportPair();
    const nowhere = destinations[1]!;
    void (async () => {
      for (let c = await nowhere.read().catch(() => undefined); c; c = await nowhere.read().catch(() => undefined));
    })();
    const writer = new MigrationStreamWriter(impostor);
    void (async () => {
      await writer.write({ name: 'CHANNEL', channel: 1, channels: 2 });
      await writer.write({ name: 'DEVICE_DATA', device: 0, payload: new Uint8Array(64) });
      await writer.flush();
    })().catch(() => undefined);
    const outcome = await Promise.allSettled([
      migrateOutgoing(p.source, { main: out, channels: sources }, { maxIterations: 2, downtimeLimitMs: 0, channels: 2 }),
      migrateIncoming(p.destination, { main: into, channels: [destinations[0]!, hostile] }),
    ]);
    const [source, destination] = await expectFailedAndRolledBack(p, outcome);
    expect(destination!.cause).toBeInstanceOf(MigrationRefusedError);
    expect(String(destination!.cause)).toMatch(/RAM channel 1: DEVICE_DATA record at offset \d+/);
    // The source hears of it as its channel drops, or from the destination's ERROR.
    expect([MigrationTransportError, MigrationRefusedError].some((c) => source!.cause instanceof c), String(source!.cause)).toBe(true);
  });

  it('refuses a source whose channels the destination does not have', async () => {
    const p = await pair();
    const [out, into] = transportPair();
    const [sources, destinations] = channelPairs(2);
    void destinations;
    const outcome = await Promise.allSettled([
      migrateOutgoing(p.source, { main: out, channels: sources }, { maxIterations: 2, downtimeLimitMs: 0, channels: 2 }),
      migrateIncoming(p.destination, into),
    ]);
    const [, destination] = await expectFailedAndRolledBack(p, outcome);
    expect(String(destination!.cause)).toMatch(/the source sends RAM over 2 channel\(s\) beside the main stream, this destination has 0/);
  });
});
