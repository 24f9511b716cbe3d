// End-to-end integrity (format version 2): a CRC-32 ends each pass and every RAM page carries a
// digest, so that any corrupted byte of a pass is refused at its end, before the destination
// answers LOADED: the guest never starts corrupted, and the source runs on.

import { describe, expect, it } from 'vitest';
import { GuestMemory } from '@vmmkit/core';
import { SimHost } from '@vmmkit/sim';
import { NIC_A, SimGuest, ramHash, simMachine } from '@vmmkit/sim/testing';
import {
  migrate, migrateIncoming, migrateOutgoing, MigrationFailedError, MigrationStreamError, MigrationStreamReader, MigrationStreamWriter,
  STREAM_CHECKSUMS, transportPair, type RamLayout, type RecordInit, type StreamRecord,
} from '../src/index.js';
import { CorruptPages } from '../src/stream/corrupt-pages.js';
import { addNic, vmOn } from './machines.js';
import { freshDestination, relay, StreamWalk, type RecordMark } from './stream-replay.js';

const PAGE = 4096;

async function encode(records: readonly RecordInit[], checksums: boolean): Promise<Uint8Array> {
  const [a, b] = transportPair();
  const writer = new MigrationStreamWriter(a, { checksums });
  for (const r of records) await writer.write(r as never);
  await writer.end();
  const chunks: Uint8Array[] = [];
  for (let c = await b.read(); c; c = await b.read()) chunks.push(c);
  return new Uint8Array(Buffer.concat(chunks));
}

async function decode(bytes: Uint8Array, memory?: RamLayout | GuestMemory): Promise<StreamRecord[]> {
  const [a, b] = transportPair();
  await a.write([bytes]);
  await a.end();
  const reader = new MigrationStreamReader(b, { memory });
  const out: StreamRecord[] = [];
  for (let r = await reader.next(); r; r = await reader.next()) out.push(r as StreamRecord);
  return out;
}

const pages = (n: number, fill: number): Uint8Array => new Uint8Array(n * PAGE).map((_, i) => (i * 7 + fill) & 0xff);

/** Two passes: everything a pass can hold, then COMPLETE; GO after the last checkpoint. */
const RECORDS: RecordInit[] = [
  { name: 'SETUP', json: { vm: 'fuzzed', blocks: [8] } },
  { name: 'RAM_PAGES', block: 0, first: 1, count: 2, payload: pages(2, 3) },
  { name: 'RAM_ZERO', block: 0, first: 3, count: 2 },
  { name: 'DEVICE_DATA', device: 0, payload: new Uint8Array(3000).fill(9) },
  { name: 'DEVICE_DATA', device: 0, payload: new Uint8Array([1, 2, 3]) },
  { name: 'ITERATION', iteration: 1, dirtyPages: 2n },
  { name: 'RAM_PAGES', block: 0, first: 6, count: 1, payload: pages(1, 5) },
  { name: 'DEVICE_END', device: 0 },
  { name: 'DEVICE_CONFIG', device: 0, payload: new Uint8Array([4, 5]) },
  { name: 'COMPLETE', ramPages: 3n, zeroPages: 2n, deviceBytes: 3005n },
  { name: 'GO' },
];
const LAYOUT: RamLayout = { blocks: [{ pages: 8 }] };

describe('the stream format with checksums', () => {
  it('says so in the preamble, and carries page digests and a CRC per pass; without, it has neither', async () => {
    const summed = await encode(RECORDS, true);
    const plain = await encode(RECORDS, false);
    expect(new DataView(summed.buffer).getUint16(10, true)).toBe(STREAM_CHECKSUMS);
    expect(new DataView(plain.buffer).getUint16(10, true)).toBe(0);
    // 3 page digests of 4 bytes are all the size difference.
    expect(summed.byteLength - plain.byteLength).toBe(3 * 4);
    for (const bytes of [summed, plain]) {
      const got = await decode(bytes, LAYOUT);
      expect(got.map((r) => r.name)).toEqual(RECORDS.map((r) => r.name));
      const ram = got.filter((r) => r.name === 'RAM_PAGES') as StreamRecord<'RAM_PAGES'>[];
      expect(ram.map((r) => [r.corruptPages, r.payload.byteLength])).toEqual([[[], 2 * PAGE], [[], PAGE]]);
      expect(ram[0]!.payload).toEqual(pages(2, 3));
      expect(got.some((r) => 'checksum' in r)).toBe(false);
    }
    const complete = (await decode(plain)).find((r) => r.name === 'COMPLETE')!;
    expect(new DataView(plain.buffer).getUint32(complete.offset + complete.size - 4, true)).toBe(0);
  });

  it('refuses a checksum in a stream without checksums', async () => {
    const plain = await encode(RECORDS, false);
    const iteration = (await decode(plain)).find((r) => r.name === 'ITERATION')!;
    plain[iteration.offset + iteration.size - 1] = 0x42;
    await expect(decode(plain)).rejects.toMatchObject({ fault: 'bad-checksum', record: 'ITERATION', offset: iteration.offset });
    await expect(decode(plain)).rejects.toThrow(/checksum 0x42000000 in a stream without checksums/);
  });

  it('refuses a flipped bit anywhere in a pass at its end, and reports one in page data as a corrupt page', async () => {
    const bytes = await encode(RECORDS, true);
    const records = await decode(bytes, LAYOUT);
    const complete = records.find((r) => r.name === 'COMPLETE')!;
    const pageData = records.filter((r) => r.name === 'RAM_PAGES').map((r) => {
      const count = (r as StreamRecord<'RAM_PAGES'>).count;
      return { start: r.offset + 24 + count * 4, end: r.offset + r.size, first: (r as StreamRecord<'RAM_PAGES'>).first };
    });
    let refused = 0;
    // One bit of every byte outside page data, and of every 61st byte of page data.
    for (let at = 0; at < complete.offset + complete.size; at++) {
      const data = pageData.find((d) => d.start <= at && at < d.end);
      if (data && (at - data.start) % 61 !== 0) continue;
      const copy = bytes.slice();
      copy[at]! ^= 1 << (at & 7);
      const outcome = await decode(copy, LAYOUT).then((r) => r, (e: unknown) => e);
      if (!data) {
        expect(outcome, `byte ${at}`).toBeInstanceOf(MigrationStreamError);
        refused++;
        continue;
      }
      // Page data is not in the pass CRC: its digest finds it, and only the destination decides.
      const page = data.first + Math.floor((at - data.start) / PAGE);
      const hit = (outcome as StreamRecord[]).find((r) => r.name === 'RAM_PAGES' && r.corruptPages.length > 0) as StreamRecord<'RAM_PAGES'>;
      expect(hit.corruptPages, `byte ${at}`).toEqual([page]);
    }
    expect(refused).toBe(complete.offset + complete.size - pageData.reduce((n, d) => n + d.end - d.start, 0));
  });

  it('finds a corrupt page received in place, straight into guest memory, too', async () => {
    const bytes = await encode(RECORDS, true);
    const first = (await decode(bytes)).find((r) => r.name === 'RAM_PAGES')!;
    bytes[first.offset + 24 + 8 + PAGE + 100]! ^= 4;
    const memory = GuestMemory.allocate(new SimHost(), [{ gpa: 0n, size: 8n * BigInt(PAGE) }]);
    const got = await decode(bytes.subarray(0, first.offset + first.size), memory);
    expect((got[1] as StreamRecord<'RAM_PAGES'>).corruptPages).toEqual([2]);
  });
});

describe('CorruptPages', () => {
  const memory = GuestMemory.allocate(new SimHost(), [{ gpa: 0n, size: 64n * BigInt(PAGE), name: 'ram' }]);
  const ram = (name: 'RAM_PAGES' | 'RAM_ZERO', first: number, count: number, corruptPages: number[] = []) =>
    ({ name, block: 0, first, count, offset: 1000 + first, corruptPages }) as unknown as StreamRecord<'RAM_PAGES'>;

  it('forgives a page sent again intact, or as a zero page, and refuses one that never is', () => {
    const c = new CorruptPages(memory);
    c.note(ram('RAM_PAGES', 0, 8, [2, 5]));
    c.note(ram('RAM_PAGES', 10, 4, [12]));
    expect(c.pending).toBe(3);
    c.note(ram('RAM_PAGES', 2, 1));
    c.note(ram('RAM_ZERO', 4, 2));
    expect(c.pending).toBe(1);
    // Sent again, corrupt again: still waiting.
    c.note(ram('RAM_PAGES', 11, 2, [12]));
    expect(c.pending).toBe(1);
    expect(() => c.check()).toThrow(/RAM_PAGES record at offset 1011: 1 page\(s\) arrived corrupted and were not sent again \(the first: page 12 of RAM block 0 'ram'\)/);
    c.note(ram('RAM_PAGES', 12, 1));
    expect(() => c.check()).not.toThrow();
  });
});

/** A busy source with a nic, a destination, and their census before the migration. */
async function pair() {
  const srcHost = new SimHost(simMachine());
  const dstHost = new SimHost(simMachine());
  const source = await vmOn(srcHost, { small: true });
  const nic = await addNic(source, NIC_A, 'iommufd');
  const destination = await freshDestination(dstHost);
  const workload = new SimGuest(source, srcHost, [{ nic, ring: 0x10_0000n }], { storesPerStep: 16 });
  await workload.setUpNics();
  await workload.step();
  source.events.on('migration:iteration', () => void workload.step());
  return { srcHost, dstHost, source, destination, srcCensus: srcHost.census(), dstCensus: dstHost.census() };
}

/** Which byte of the forward stream to corrupt: given each record as its head passes. */
type Pick = (mark: RecordMark, walk: StreamWalk, switchedOver: boolean) => number | undefined;

const TARGETS: [string, 'precopy' | 'stop-copy', Pick][] = [
  ['a byte of page data sent in stop-copy (never sent again)', 'stop-copy', (m, w, late) =>
    late && m.name === 'RAM_PAGES' ? m.offset + 24 + w.u32(m.offset + 16) * 4 + 100 : undefined],
  // The last byte: the device checks the head of its own data as it is written, not its contents.
  ['a byte of device data', 'precopy', (m) => (m.name === 'DEVICE_DATA' ? m.offset + m.size - 1 : undefined)],
  ['a record header: a RAM_ZERO run moved down a page', 'precopy', (m, w) =>
    m.name === 'RAM_ZERO' && w.u32(m.offset + 12) % 2 === 1 ? m.offset + 12 : undefined],
];

describe('a migration with a corrupted byte', () => {
  it.for(TARGETS)('%s: the destination refuses before GO, the source runs on', async ([, pass, pick]) => {
    const p = await pair();
    let switchedOver = false;
    p.source.events.on('migration:switchover', () => (switchedOver = true));
    const walk = new StreamWalk();
    let target: number | undefined;
    const [out, wire] = transportPair();
    const [tap, into] = transportPair();
    relay(wire, tap, (chunk, offset) => {
      for (const mark of walk.feed(chunk)) target ??= pick(mark, walk, switchedOver);
      if (target === undefined || target < offset || target >= offset + chunk.byteLength) return;
      const copy = chunk.slice();
      copy[target - offset]! ^= 0x01;
      return copy;
    });
    const [sent, received] = await Promise.allSettled([
      migrateOutgoing(p.source, out, { maxIterations: 2, downtimeLimitMs: 0, integrity: true }),
      migrateIncoming(p.destination, into),
    ]);
    expect(target).toBeDefined();
    const error = (received as PromiseRejectedResult).reason as MigrationFailedError;
    expect(error).toBeInstanceOf(MigrationFailedError);
    expect(error.phase).toBe(pass);
    expect(error.cause).toBeInstanceOf(MigrationStreamError);
    expect((error.cause as MigrationStreamError).fault).toBe('bad-checksum');
    // Never started, nothing held; the source was told, and runs on as it was.
    expect(p.destination.running).toBe(false);
    expect(p.dstHost.census()).toEqual(p.dstCensus);
    expect(sent.status).toBe('rejected');
    expect(String((sent as PromiseRejectedResult).reason)).toContain('the destination refused the migration');
    expect(p.source.running).toBe(true);
    expect(p.srcHost.census()).toEqual(p.srcCensus);
    // And a migration without the corruption succeeds.
    await p.destination.close();
    const fresh = await freshDestination(p.dstHost);
    await migrate(p.source, fresh, { maxIterations: 2, downtimeLimitMs: 0, integrity: true });
    expect(ramHash(fresh.memory)).toBe(ramHash(p.source.memory));
    await fresh.close();
    await p.source.close();
  });
});
