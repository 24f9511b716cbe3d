// RAM channels in worker threads: the connections are handed to workers that send and receive
// pages straight from and into guest RAM LinuxHost mapped (shared with them by address), while
// the owning thread keeps the passes in order. Nothing is lost, the newest copy of a page wins,
// a hostile or lost channel is refused with the same typed error as on one thread, a worker that
// dies is a MigrationChannelThreadError, and nothing is left behind: workers exited, fds closed.

import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DirtyBitmap, GuestMemory, LinuxHost } from '@vmmkit/core';
import {
  BandwidthPacer, connectMigration, listenMigration, MigrationChannelThreadError, MigrationStreamWriter, MigrationTimeoutError,
  RamChannelReceiver, ramChannelThreadsPossible, ThreadedRamChannelSender, type MigrationTransport,
} from '../src/index.js';
import { HOSTILE_CHANNELS, expectRefused } from './support/hostile-channels.js';

const PAGE = 4096;
const PAGES = 4096; // 16 MiB

const host = new LinuxHost();
const openFds = (): number => readdirSync('/proc/self/fd').length;

/**
 * No more fds open than at `baseline`. Fewer is fine: an earlier test's worker may still have
 * been closing one when the baseline was read. A worker's close lands a moment after it exits,
 * so this gives it up to 2 s.
 */
async function expectNoFdLeft(baseline: number): Promise<void> {
  for (let i = 0; i < 100 && openFds() > baseline; i++) await new Promise((r) => setTimeout(r, 20));
  expect(openFds()).toBeLessThanOrEqual(baseline);
}

function ram(): GuestMemory {
  return GuestMemory.allocate(host, [{ gpa: 0n, size: BigInt(PAGES * PAGE), name: 'low' }, { gpa: 1n << 32n, size: BigInt(PAGES * PAGE), name: 'high' }]);
}

/** Fill the pages whose bit is set with bytes of `stamp` (zero pages where stamp is 0). */
function touch(memory: GuestMemory, block: number, dirty: DirtyBitmap, stamp: number): void {
  const bytes = memory.blocks[block]!.mapping.bytes;
  dirty.forEachSetBit((page) => bytes.fill(stamp === 0 ? 0 : (stamp + page) & 0xff || 1, page * PAGE, (page + 1) * PAGE));
}

function someDirty(seed: number): DirtyBitmap {
  const dirty = new DirtyBitmap(PAGES);
  for (let i = 0; i < PAGES / 4; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    dirty.set(seed % PAGES);
  }
  return dirty;
}

function same(a: GuestMemory, b: GuestMemory): boolean {
  return a.blocks.every((block, i) => Buffer.compare(block.mapping.bytes, b.blocks[i]!.mapping.bytes) === 0);
}

/** `n` socket connections over a Unix socket: [source ends, destination ends]. */
async function sockets(n: number): Promise<[MigrationTransport[], MigrationTransport[]]> {
  const listener = await listenMigration(`unix:/tmp/vmmkit-threads-${process.pid}-${Math.random().toString(36).slice(2)}.sock`, { connections: n });
  const sources: MigrationTransport[] = [];
  const destinations: MigrationTransport[] = [];
  for (let i = 0; i < n; i++) {
    sources.push(await connectMigration(listener.name));
    destinations.push(await listener.accept());
  }
  await listener.close();
  return [sources, destinations];
}

describe('RAM channels in worker threads', { timeout: 30_000 }, () => {
  it('are possible on LinuxHost RAM over sockets only', async () => {
    const memory = ram();
    const [sources, destinations] = await sockets(1);
    expect(ramChannelThreadsPossible(memory, sources)).toBe(true);
    const { SimHost } = await import('@vmmkit/sim');
    const sim = GuestMemory.allocate(new SimHost(), [{ gpa: 0n, size: BigInt(PAGE * 16) }]);
    expect(ramChannelThreadsPossible(sim, sources)).toBe(false);
    expect(() => new ThreadedRamChannelSender(sources, { memory: sim })).toThrow(/cannot be shared/);
    for (const t of [...sources, ...destinations]) t.destroy();
    memory.free();
  });

  it.for([1, 3])('%i channel(s): nothing is lost over four passes with checksums, the newest copy wins, and nothing is left', async (n) => {
    const fds = openFds();
    const source = ram();
    const destination = ram();
    const [sources, destinations] = await sockets(n);
    const sender = new ThreadedRamChannelSender(sources, { memory: source, checksums: true });
    // Pages that arrived corrupted and no later copy replaced (a page the test changes while its
    // earlier copy is still on the way arrives so, and its next copy replaces it).
    const corrupt = new Set<string>();
    let applied = 0;
    const receiver = new RamChannelReceiver(destinations, {
      memory: destination, threads: true, onRecord: (r) => {
        applied += r.count;
        for (let p = r.first; p < r.first + r.count; p++) corrupt.delete(`${r.block}:${p}`);
        for (const p of r.corruptPages ?? []) corrupt.add(`${r.block}:${p}`);
      },
    });
    const all = new DirtyBitmap(PAGES);
    all.fill();
    touch(source, 0, all, 1);
    touch(source, 1, all, 2);
    const passes = [all, someDirty(1), someDirty(2), someDirty(3)];
    let sentPages = 0;
    const sent = (async () => {
      await sender.open();
      for (const [i, dirty] of passes.entries()) {
        if (i > 0) touch(source, i % 2, dirty, i === 2 ? 0 : 10 * i);
        for (const block of i === 0 ? [0, 1] : [i % 2]) {
          const r = await sender.send(source, block, dirty);
          sentPages += r.pages + r.zeroPages;
        }
        await sender.sync(i + 1);
      }
      await sender.end();
    })();
    for (let pass = 1; pass <= passes.length; pass++) await receiver.pass(pass);
    await receiver.end();
    await sent;
    await receiver.settled();
    expect(same(source, destination)).toBe(true);
    expect(applied).toBe(sentPages);
    expect(corrupt.size).toBe(0);
    expect(receiver.bytesRead).toBe(sender.bytesWritten);
    await expectNoFdLeft(fds);
    source.free();
    destination.free();
  });

  it('keep a bandwidth limit: the owning thread deals the pages at the pacer\'s pace, 4 MiB at a time', async () => {
    const fds = openFds();
    const source = ram();
    const destination = ram();
    const [sources, destinations] = await sockets(2);
    // A virtual clock: the pacer's sleeps advance it, so the test reads what was paced, not time.
    let now = 0;
    const paced: number[] = [];
    const pacer = new BandwidthPacer(8 << 20, { now: () => now, sleep: async (ms) => void (now += ms) });
    const pace = pacer.pace.bind(pacer);
    pacer.pace = (bytes) => (paced.push(bytes), pace(bytes));
    const sender = new ThreadedRamChannelSender(sources, { memory: source, pacer });
    const receiver = new RamChannelReceiver(destinations, { memory: destination, threads: true });
    const all = new DirtyBitmap(PAGES);
    all.fill();
    touch(source, 0, all, 3);
    const sent = (async () => {
      await sender.open();
      await sender.send(source, 0, all);
      await sender.sync(1);
      await sender.end();
    })();
    await receiver.pass(1);
    await receiver.end();
    await sent;
    await receiver.settled();
    expect(same(source, destination)).toBe(true);
    // 16 MiB in requests of at most 4 MiB, every byte paced: 2 s at 8 MiB/s on the virtual clock.
    expect(paced.reduce((a, b) => a + b, 0)).toBe(PAGES * PAGE);
    expect(Math.max(...paced)).toBeLessThanOrEqual(4 << 20);
    expect(now).toBeGreaterThanOrEqual(1900);
    source.free();
    destination.free();
    await expectNoFdLeft(fds);
  });

  it.for(HOSTILE_CHANNELS)('refuses %s with the typed error the worker saw, and leaves nothing', async ([, how, message]) => {
    const fds = openFds();
    const destination = ram();
    const [sources, destinations] = await sockets(2);
    const writers = sources.map((s) => new MigrationStreamWriter(s));
    const receiver = new RamChannelReceiver(destinations, { memory: destination, threads: true });
    await expectRefused(writers, receiver, how, message, PAGE);
    await receiver.settled();
    for (const t of sources) t.destroy();
    await expectNoFdLeft(fds);
    destination.free();
  });

  it.for([false, true])('threads %s: a channel that sends pages after the last pass is refused, and they never reach guest RAM', async (threads) => {
    const destination = ram();
    const [sources, destinations] = await sockets(1);
    const receiver = new RamChannelReceiver(destinations, { memory: destination, threads });
    const writer = new MigrationStreamWriter(sources[0]!);
    await writer.write({ name: 'CHANNEL', channel: 0, channels: 1 });
    await writer.write({ name: 'SYNC', pass: 1 });
    await writer.write({ name: 'RAM_PAGES', block: 0, first: 3, count: 1, payload: new Uint8Array(PAGE).fill(9) });
    await writer.end();
    await receiver.pass(1, true);
    await expect(receiver.end()).rejects.toThrow(/RAM channel 0: more after the last pass \(1\)/);
    await receiver.settled();
    expect(destination.blocks[0]!.mapping.bytes.subarray(3 * PAGE, 4 * PAGE).every((b) => b === 0)).toBe(true);
    destination.free();
  });

  it('marks a page whose data was corrupted on the way (its digest, checked in the worker)', async () => {
    const source = ram();
    const destination = ram();
    const [sources, destinations] = await sockets(1);
    const corrupt: number[] = [];
    const receiver = new RamChannelReceiver(destinations, { memory: destination, threads: true, onRecord: (r) => corrupt.push(...(r.corruptPages ?? [])) });
    const writer = new MigrationStreamWriter(sources[0]!, { checksums: true });
    const payload = new Uint8Array(16 * PAGE).fill(7);
    await writer.write({ name: 'CHANNEL', channel: 0, channels: 1 });
    await writer.write({ name: 'RAM_PAGES', block: 0, first: 32, count: 16, payload });
    // The payload goes out as a view: a byte changed after its digest is what a bad wire does.
    payload[5 * PAGE + 3]! ^= 1;
    await writer.write({ name: 'SYNC', pass: 1 });
    await writer.end();
    await receiver.pass(1);
    await receiver.end();
    expect(corrupt).toEqual([37]);
    await receiver.settled();
    source.free();
    destination.free();
  });

  it('refuses a channel gone silent with the MigrationTimeoutError its worker saw', async () => {
    const fds = openFds();
    const destination = ram();
    const [sources, destinations] = await sockets(1);
    const receiver = new RamChannelReceiver(destinations, { memory: destination, threads: true, idleTimeoutMs: 300 });
    const writer = new MigrationStreamWriter(sources[0]!);
    await writer.write({ name: 'CHANNEL', channel: 0, channels: 1 });
    await writer.flush();
    const failed = await receiver.pass(1).then(() => undefined, (e: unknown) => e);
    expect(failed).toBeInstanceOf(MigrationTimeoutError);
    expect((failed as MigrationTimeoutError).timeoutMs).toBe(300);
    await receiver.settled();
    sources[0]!.destroy();
    await expectNoFdLeft(fds);
    destination.free();
  });

  it('refuses a channel lost inside a pass', async () => {
    const fds = openFds();
    const destination = ram();
    const [sources, destinations] = await sockets(2);
    const receiver = new RamChannelReceiver(destinations, { memory: destination, threads: true });
    const writers = sources.map((t) => new MigrationStreamWriter(t));
    await Promise.all(writers.map((w, channel) => w.write({ name: 'CHANNEL', channel, channels: 2 })));
    await writers[0]!.write({ name: 'RAM_PAGES', block: 0, first: 0, count: 1, payload: new Uint8Array(PAGE).fill(1) });
    await writers[0]!.flush();
    await writers[1]!.flush();
    sources[0]!.destroy();
    const failed = await receiver.pass(1).then(() => undefined, (e: unknown) => e);
    expect(failed).toBeInstanceOf(Error);
    expect((failed as Error).name).toMatch(/^Migration(Refused|Transport|Stream)Error$/);
    await receiver.settled();
    sources[1]!.destroy();
    await expectNoFdLeft(fds);
    destination.free();
  });

  it.for([
    ['exits before it takes the connection', 'exited with code 3'],
    ['throws', 'failed: a channel worker that throws'],
  ])('a worker that %s is a MigrationChannelThreadError, its fd closed', async ([kind, message]) => {
    const fds = openFds();
    const memory = ram();
    const [sources, destinations] = await sockets(2);
    const module = new URL(`./support/broken-channel-worker-${kind === 'throws' ? 'throws' : 'exits'}.mjs`, import.meta.url);
    const receiver = new RamChannelReceiver(destinations, { memory, threads: true, threadModule: module });
    const failed = await receiver.pass(1).then(() => undefined, (e: unknown) => e);
    expect(failed).toBeInstanceOf(MigrationChannelThreadError);
    expect((failed as Error).message).toContain(message);
    await receiver.settled();
    const sender = new ThreadedRamChannelSender(sources, { memory, threadModule: module });
    const refused = await sender.open().then(() => undefined, (e: unknown) => e);
    expect(refused).toBeInstanceOf(MigrationChannelThreadError);
    await sender.settled();
    await expectNoFdLeft(fds);
    memory.free();
  });
});
