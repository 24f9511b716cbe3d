// RAM channels beside the main stream (QEMU's multifd): pages spread over several transports,
// each pass ended by SYNC on every channel, and the destination holding every channel at the end
// of a pass until all have reached it, so that the newest copy of a page always wins; a lost
// channel, a hostile channel and a corrupted channel are each refused with a typed error.

import { describe, expect, it } from 'vitest';
import { DirtyBitmap, GuestMemory } from '@vmmkit/core';
import { SimHost } from '@vmmkit/sim';
import {
  MigrationStreamError, MigrationStreamWriter, MigrationTransportError, RamChannelReceiver, RamChannelSender,
  transportPair, type MigrationTransport,
} from '../src/index.js';
import { HOSTILE_CHANNELS, expectRefused } from './support/hostile-channels.js';
import { relay, StreamWalk } from './stream-replay.js';

const PAGE = 4096;
const PAGES = 2048; // 8 MiB: each pass several records per channel

function ram(): GuestMemory {
  return GuestMemory.allocate(new SimHost(), [{ gpa: 0n, size: BigInt(PAGES * PAGE) }]);
}

/** Write `stamp` into the pages whose bit is set (zero pages where stamp is 0), as a vCPU would. */
function touch(memory: GuestMemory, dirty: DirtyBitmap, stamp: number): void {
  const bytes = memory.blocks[0]!.mapping.bytes;
  dirty.forEachSetBit((page) => bytes.fill(stamp === 0 ? 0 : (stamp + page) & 0xff || 1, page * PAGE, (page + 1) * PAGE));
}

/** A destination end whose reads are held back (a slow channel: the others run ahead of it). */
function slow(transport: MigrationTransport, ms: number): MigrationTransport {
  const read = transport.read.bind(transport);
  return Object.assign(Object.create(transport) as MigrationTransport, {
    read: async () => {
      await new Promise((resolve) => setTimeout(resolve, ms));
      return read();
    },
    readInto: undefined,
  });
}

interface Channels {
  readonly sender: RamChannelSender;
  readonly destinations: MigrationTransport[];
  readonly sources: MigrationTransport[];
}

function channels(n: number, checksums = false): Channels {
  const pairs = Array.from({ length: n }, (_, i) => transportPair({ names: [`ch${i}:source`, `ch${i}:destination`] }));
  const sources = pairs.map(([s]) => s);
  return { sources, destinations: pairs.map(([, d]) => d), sender: new RamChannelSender(sources.map((s) => new MigrationStreamWriter(s, { checksums }))) };
}

/** A random quarter of the pages, some of them zero pages. */
function someDirty(seed: number): DirtyBitmap {
  const dirty = new DirtyBitmap(PAGES);
  for (let i = 0; i < PAGES / 4; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    dirty.set(seed % PAGES);
  }
  return dirty;
}

describe('RAM channels', () => {
  it.for([1, 2, 4])('%i channel(s): every pass arrives whole and the newest copy of each page wins, with one channel slow', { timeout: 30_000 }, async (n) => {
    const source = ram();
    const destination = ram();
    const { sender, destinations } = channels(n);
    // Channel 0 lags: without the hold at SYNC, its older copies would land after the others' newer ones.
    destinations[0] = slow(destinations[0]!, 1);
    const receiver = new RamChannelReceiver(destinations, { memory: destination });
    const all = new DirtyBitmap(PAGES);
    all.fill();
    touch(source, all, 1);
    const passes = [all, someDirty(1), someDirty(2), someDirty(3)];
    const sent = (async () => {
      await sender.open();
      for (const [i, dirty] of passes.entries()) {
        if (i > 0) touch(source, dirty, i === 2 ? 0 : 10 * i);
        await sender.send(source, 0, dirty);
        await sender.sync(i + 1);
      }
      await sender.end();
    })();
    for (let pass = 1; pass <= passes.length; pass++) await receiver.pass(pass);
    await receiver.end();
    await sent;
    expect(Buffer.compare(destination.blocks[0]!.mapping.bytes, source.blocks[0]!.mapping.bytes)).toBe(0);
    expect(receiver.bytesRead).toBe(sender.bytesWritten);
  });

  it('deals the records to every channel in turn', async () => {
    const source = ram();
    const { sender, destinations } = channels(3);
    const all = new DirtyBitmap(PAGES);
    all.fill();
    touch(source, all, 7);
    // Count each channel's RAM records at its own end of the wire.
    const counts = [0, 0, 0];
    const taps = destinations.map((wire, i) => {
      const [tap, into] = transportPair();
      const walk = new StreamWalk();
      relay(wire, tap, (chunk) => void (counts[i]! += walk.feed(chunk).filter((m) => m.name === 'RAM_PAGES').length));
      return into;
    });
    const receiver = new RamChannelReceiver(taps, { memory: ram() });
    const [result] = await Promise.all([
      (async () => {
        await sender.open();
        const r = await sender.send(source, 0, all);
        await sender.sync(1);
        await sender.end();
        return r;
      })(),
      receiver.pass(1).then(() => receiver.end()),
    ]);
    expect(result).toMatchObject({ pages: PAGES, zeroPages: 0 });
    // 2048 pages in records of 256: 8 records dealt to 3 channels.
    expect(counts).toEqual([3, 3, 2]);
  });

  it('a lost channel fails the pass with a transport error, and the other channels are let go', async () => {
    const source = ram();
    const destination = ram();
    const { sender, destinations, sources } = channels(3);
    const receiver = new RamChannelReceiver(destinations, { memory: destination });
    const all = new DirtyBitmap(PAGES);
    all.fill();
    touch(source, all, 3);
    const sent = (async () => {
      await sender.open();
      await sender.send(source, 0, all);
      sources[1]!.destroy(); // the connection breaks before the pass ends
      await sender.sync(1);
    })();
    await expect(receiver.pass(1)).rejects.toBeInstanceOf(MigrationTransportError);
    await expect(receiver.end()).rejects.toBeInstanceOf(MigrationTransportError);
    await expect(sent).rejects.toBeInstanceOf(MigrationTransportError);
    // Every channel is destroyed: a write on any of them fails now.
    for (const s of sources) await expect(s.write([new Uint8Array(1)])).rejects.toBeInstanceOf(MigrationTransportError);
  });

  it.for(HOSTILE_CHANNELS)('refuses %s', async ([, how, message]) => {
    const destination = ram();
    const pairs = [transportPair(), transportPair()];
    const writers = pairs.map(([s]) => new MigrationStreamWriter(s));
    const receiver = new RamChannelReceiver(pairs.map(([, d]) => d), { memory: destination });
    await expectRefused(writers, receiver, how, message, PAGE);
  });

  it.for(['a page', 'a SYNC'] as const)('with checksums, a corrupted byte in %s on a channel is caught before its pass ends', async (target) => {
    const source = ram();
    const destination = ram();
    const all = new DirtyBitmap(PAGES);
    all.fill();
    touch(source, all, 9);
    const { sender, destinations } = channels(2, true);
    // Channel 1 crosses a relay that flips one bit: of its first page, or of its SYNC's pass field.
    const [tap, into] = transportPair();
    const walk = new StreamWalk();
    let at: number | undefined;
    relay(destinations[1]!, tap, (chunk, offset) => {
      for (const mark of walk.feed(chunk)) {
        if (at !== undefined) continue;
        if (target === 'a page' && mark.name === 'RAM_PAGES') at = mark.offset + 24 + 4 * walk.u32(mark.offset + 16) + 100;
        if (target === 'a SYNC' && mark.name === 'SYNC') at = mark.offset + 8;
      }
      if (at === undefined || at < offset || at >= offset + chunk.byteLength) return;
      const copy = chunk.slice();
      copy[at - offset]! ^= 0x10;
      return copy;
    });
    const corrupt: number[] = [];
    const receiver = new RamChannelReceiver([destinations[0]!, into], {
      memory: destination,
      onRecord: (r) => void corrupt.push(...(r.corruptPages ?? [])),
    });
    const sent = (async () => {
      await sender.open();
      await sender.send(source, 0, all);
      await sender.sync(1);
      await sender.end();
    })();
    if (target === 'a page') {
      await receiver.pass(1);
      await receiver.end();
      await sent;
      // Channel 1's first record is the second run of 256 pages: its first page is page 256.
      expect(corrupt).toEqual([256]);
      return;
    }
    const error = await receiver.pass(1).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(MigrationStreamError);
    expect(error).toMatchObject({ fault: 'bad-checksum', record: 'SYNC' });
    expect(corrupt).toEqual([]);
    await sent.catch(() => undefined);
  });
});
