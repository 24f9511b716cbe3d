// The RAM page path: sendDirtyPages sends exactly the dirty pages, data runs of at most 256 pages
// and zero pages as markers only; applyRamRecord loads them into the destination's guest memory.

import { randomFillSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DirtyBitmap, GuestMemory } from '@vmmkit/core';
import { SimHost } from '@vmmkit/sim';
import {
  applyRamRecord, MigrationStreamError, MigrationStreamReader, MigrationStreamWriter, sendDirtyPages, transportPair,
  type RamRecord, type RamSendResult, type StreamRecord,
} from '../src/index.js';

const PAGE = 4096;
const MiB = 1n << 20n;

const memoryOf = (...sizes: bigint[]): GuestMemory =>
  GuestMemory.allocate(new SimHost(), sizes.map((size, i) => ({ gpa: BigInt(i) << 32n, size })));

/** Send `dirty` pages of block `index` over an in-process pair; the records as read, and what the sender reported. */
async function send(memory: GuestMemory, index: number, dirty: DirtyBitmap, destination?: GuestMemory): Promise<{ records: StreamRecord[]; result: RamSendResult }> {
  const [a, b] = transportPair();
  const writer = new MigrationStreamWriter(a);
  const reader = new MigrationStreamReader(b, { memory: destination });
  const sent = sendDirtyPages(writer, memory, index, dirty).then(async (result) => (await writer.end(), result));
  const records: StreamRecord[] = [];
  for (let r = await reader.next(); r; r = await reader.next()) {
    records.push(r);
    if (destination && (r.name === 'RAM_PAGES' || r.name === 'RAM_ZERO')) applyRamRecord(destination, r);
  }
  return { records, result: await sent };
}

const runs = (records: StreamRecord[]): [string, number, number][] =>
  (records as RamRecord[]).map((r) => [r.name, r.first, r.count]);

describe('sendDirtyPages', () => {
  it('sends exactly the dirty pages: data in runs of at most 256 pages, zero pages as markers', async () => {
    const source = memoryOf(4n * MiB);
    const block = source.blocks[0]!;
    randomFillSync(block.mapping.view(0, 600 * PAGE));
    randomFillSync(block.mapping.view(700 * PAGE, 324 * PAGE));
    block.mapping.view(10 * PAGE, PAGE).fill(0);
    const dirty = new DirtyBitmap(block.pages);
    dirty.setRange(0, 500);
    dirty.setRange(510, 514);
    const destination = memoryOf(4n * MiB);
    destination.blocks[0]!.mapping.bytes.fill(0xee);

    const { records, result } = await send(source, 0, dirty, destination);
    expect(runs(records)).toEqual([
      ['RAM_PAGES', 0, 10], ['RAM_ZERO', 10, 1], ['RAM_PAGES', 11, 256], ['RAM_PAGES', 267, 233],
      ['RAM_PAGES', 510, 90], ['RAM_ZERO', 600, 100], ['RAM_PAGES', 700, 256], ['RAM_PAGES', 956, 68],
    ]);
    expect(result).toEqual({ pages: 913, zeroPages: 101, bytes: 6 * 24 + 2 * 24 + 913 * PAGE });
    const got = destination.blocks[0]!.mapping.bytes;
    const want = block.mapping.bytes;
    expect(Buffer.compare(got.subarray(0, 500 * PAGE), want.subarray(0, 500 * PAGE))).toBe(0);
    expect(Buffer.compare(got.subarray(510 * PAGE), want.subarray(510 * PAGE))).toBe(0);
    // The clean pages were not sent: they keep what the destination had.
    expect(got.subarray(500 * PAGE, 510 * PAGE).every((b) => b === 0xee)).toBe(true);
    expect(dirty.count()).toBe(1014);
  });

  it('sends a page with a single nonzero byte anywhere as data', async () => {
    const source = memoryOf(MiB);
    const bytes = source.blocks[0]!.mapping.bytes;
    bytes[2 * PAGE] = 1;
    bytes[4 * PAGE - 1] = 0x80;
    bytes[5 * PAGE + 2049] = 3;
    const dirty = new DirtyBitmap(256);
    dirty.fill();
    const { records } = await send(source, 0, dirty);
    expect(runs(records)).toEqual([['RAM_ZERO', 0, 2], ['RAM_PAGES', 2, 2], ['RAM_ZERO', 4, 1], ['RAM_PAGES', 5, 1], ['RAM_ZERO', 6, 250]]);
  });

  it('does not send zero pages as data', async () => {
    const source = memoryOf(8n * MiB);
    const dirty = new DirtyBitmap(source.blocks[0]!.pages);
    dirty.fill();
    const { records, result } = await send(source, 0, dirty);
    expect(runs(records)).toEqual([['RAM_ZERO', 0, 2048]]);
    expect(result).toEqual({ pages: 0, zeroPages: 2048, bytes: 24 });
  });

  it('finds runs to the last page of a block whose size is not a multiple of 32 pages', async () => {
    const source = memoryOf(70n * 4096n, 5n * 4096n);
    randomFillSync(source.blocks[1]!.mapping.bytes);
    const dirty0 = new DirtyBitmap(70);
    dirty0.setRange(33, 37);
    const dirty1 = new DirtyBitmap(5);
    dirty1.fill();
    const destination = memoryOf(70n * 4096n, 5n * 4096n);
    expect(runs((await send(source, 0, dirty0, destination)).records)).toEqual([['RAM_ZERO', 33, 37]]);
    const { records } = await send(source, 1, dirty1, destination);
    expect((records as RamRecord[]).map((r) => [r.name, r.block, r.first, r.count])).toEqual([['RAM_PAGES', 1, 0, 5]]);
    expect(destination.blocks[1]!.mapping.bytes).toEqual(source.blocks[1]!.mapping.bytes);
  });

  it('refuses a block that does not exist and a bitmap of another size', async () => {
    const source = memoryOf(MiB);
    const writer = new MigrationStreamWriter(transportPair()[0]);
    await expect(sendDirtyPages(writer, source, 1, new DirtyBitmap(256))).rejects.toThrow(/RAM block 1 does not exist/);
    await expect(sendDirtyPages(writer, source, 0, new DirtyBitmap(255))).rejects.toThrow(/a bitmap of 255 pages for RAM block ram0 of 256/);
  });
});

describe('applyRamRecord', () => {
  it('zeroes a zero run where the destination is not zero', async () => {
    const source = memoryOf(MiB);
    const destination = memoryOf(MiB);
    const bytes = destination.blocks[0]!.mapping.bytes;
    bytes[5 * PAGE + 7] = 9;
    bytes[200 * PAGE] = 1;
    const dirty = new DirtyBitmap(256);
    dirty.setRange(0, 100);
    await send(source, 0, dirty, destination);
    expect(bytes[5 * PAGE + 7]).toBe(0);
    expect(bytes[200 * PAGE]).toBe(1);
  });

  it('refuses a run outside the destination guest RAM, naming the record and offset', async () => {
    const source = memoryOf(MiB);
    randomFillSync(source.blocks[0]!.mapping.bytes);
    const dirty = new DirtyBitmap(256);
    dirty.setRange(250, 6);
    const { records } = await send(source, 0, dirty);
    const small = memoryOf(MiB - 4096n);
    const error = (() => {
      try {
        applyRamRecord(small, records[0] as RamRecord);
      } catch (e) {
        return e;
      }
    })() as MigrationStreamError;
    expect(error).toBeInstanceOf(MigrationStreamError);
    expect({ fault: error.fault, record: error.record, offset: error.offset }).toEqual({ fault: 'outside-ram', record: 'RAM_PAGES', offset: 16 });
    expect(error.message).toMatch(/pages 250\.\.255 are outside RAM block 0 of 255 pages/);
    expect(() => applyRamRecord(memoryOf(MiB), { ...(records[0] as RamRecord), block: 3 } as RamRecord)).toThrow(/RAM block 3 does not exist/);
  });
});
