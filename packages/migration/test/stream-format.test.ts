// The wire format: every record type round-trips, and every way a stream can break the format is
// refused by the reader (and the writer) with a MigrationStreamError naming the record and offset.

import { describe, expect, it } from 'vitest';
import {
  MigrationStreamError, MigrationStreamReader, MigrationStreamWriter, RECORDS, RecordType, transportPair,
  type RamLayout, type RecordInit, type StreamDirection, type StreamFault, type StreamRecord,
} from '../src/index.js';

const PAGE = 4096;

/** The bytes a writer produces for `records`. */
async function encode<D extends StreamDirection>(direction: D, records: readonly RecordInit[], checksums = false): Promise<Uint8Array> {
  const [a, b] = transportPair();
  const writer = new MigrationStreamWriter(a, { direction, checksums });
  for (const r of records) await writer.write(r as never);
  await writer.end();
  return concat(await drain(b));
}

async function drain(t: { read(): Promise<Uint8Array | undefined> }): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for (let c = await t.read(); c; c = await t.read()) chunks.push(c);
  return chunks;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.byteLength));
  return out;
}

/** Read every record of `bytes`, fed in chunks of `chunk` bytes and then ended. */
async function decode(bytes: Uint8Array, options: { direction?: StreamDirection; memory?: RamLayout; chunk?: number } = {}): Promise<StreamRecord[]> {
  const [a, b] = transportPair();
  const chunk = options.chunk ?? bytes.byteLength;
  for (let at = 0; at < bytes.byteLength; at += chunk) await a.write([bytes.slice(at, at + chunk)]);
  await a.end();
  const reader = new MigrationStreamReader(b, options);
  const out: StreamRecord[] = [];
  for (let r = await reader.next(); r; r = await reader.next()) out.push(r as StreamRecord);
  return out;
}

function preamble(o: { magic?: string; version?: number; flags?: number; reserved?: number } = {}): Uint8Array {
  const b = new Uint8Array(16);
  b.set(new TextEncoder().encode(o.magic ?? 'VMMKITMG'));
  const v = new DataView(b.buffer);
  v.setUint16(8, o.version ?? 2, true);
  v.setUint16(10, o.flags ?? 0, true);
  v.setUint32(12, o.reserved ?? 0, true);
  return b;
}

/** A hand-built record: header (with overridable flags, reserved, length) and body. */
function rec(type: number, body: Uint8Array = new Uint8Array(0), o: { flags?: number; reserved?: number; length?: number } = {}): Uint8Array {
  const b = new Uint8Array(8 + body.byteLength);
  const v = new DataView(b.buffer);
  v.setUint8(0, type);
  v.setUint8(1, o.flags ?? 0);
  v.setUint16(2, o.reserved ?? 0, true);
  v.setUint32(4, o.length ?? body.byteLength, true);
  b.set(body, 8);
  return b;
}

const u32 = (...values: number[]): Uint8Array => new Uint8Array(new Uint32Array(values).buffer);
const ramBody = (block: number, first: number, count: number, dataPages = 0, reserved = 0): Uint8Array => concat([u32(block, first, count, reserved), new Uint8Array(dataPages * PAGE).fill(0xab)]);
const stream = (...records: Uint8Array[]): Uint8Array => concat([preamble(), ...records]);

async function expectFault(bytes: Uint8Array, fault: StreamFault, record: string, offset: number, message: RegExp, options: Parameters<typeof decode>[1] = {}): Promise<MigrationStreamError> {
  const error = await decode(bytes, options).then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(MigrationStreamError);
  const e = error as MigrationStreamError;
  expect({ fault: e.fault, record: e.record, offset: e.offset, code: e.code }).toEqual({ fault, record, offset, code: 'MIGRATION_STREAM' });
  expect(e.message).toMatch(message);
  expect(e.message).toContain(`offset ${offset}`);
  return e;
}

const EVERY_FORWARD: RecordInit[] = [
  { name: 'SETUP', json: { blocks: [{ name: 'ram0', pages: 4 }], devices: ['0000:00:04.0'] } },
  { name: 'RAM_PAGES', block: 0, first: 1, count: 2, payload: new Uint8Array(2 * PAGE).fill(7) },
  { name: 'RAM_ZERO', block: 0, first: 3, count: 1 },
  { name: 'DEVICE_DATA', device: 2, payload: new Uint8Array([1, 2, 3]) },
  { name: 'DEVICE_CONFIG', device: 2, payload: new Uint8Array(0) },
  { name: 'DEVICE_END', device: 2 },
  { name: 'ITERATION', iteration: 5, dirtyPages: 2n ** 60n + 3n },
  { name: 'COMPLETE', ramPages: 2n, zeroPages: 2n ** 64n - 1n, deviceBytes: 3n },
  { name: 'ABORT', text: 'cancelled by the user: ünïcødé' },
  { name: 'GO' },
];

describe('the record table', () => {
  it('gives every record a distinct type byte, forward below 0x80 and return above', () => {
    const types = Object.values(RECORDS).map((r) => r.type);
    expect(new Set(types).size).toBe(types.length);
    for (const r of Object.values(RECORDS)) expect(r.type >= 0x80).toBe(r.direction === 'return');
    expect(RecordType).toMatchObject({ SETUP: 0x01, RAM_PAGES: 0x02, GO: 0x0a, READY: 0x81, LOADED: 0x82, ERROR: 0x83 });
  });
});

describe('round trip', () => {
  it.for([1, 3, 4096, 1 << 20])('carries every forward record, fed in %i-byte chunks, with and without checksums', async (chunk) => {
    for (const checksums of [false, true]) await roundTrip(chunk, checksums);
  });

  async function roundTrip(chunk: number, checksums: boolean): Promise<void> {
    const bytes = await encode('forward', EVERY_FORWARD, checksums);
    expect(bytes.subarray(0, 8)).toEqual(new TextEncoder().encode('VMMKITMG'));
    const got = await decode(bytes, { chunk });
    expect(got.map((r) => r.name)).toEqual(EVERY_FORWARD.map((r) => r.name));
    const [setup, pages, zero, data, config, end, iteration, complete, abort] = got as any[];
    expect(setup.json).toEqual({ blocks: [{ name: 'ram0', pages: 4 }], devices: ['0000:00:04.0'] });
    expect({ block: pages.block, first: pages.first, count: pages.count, type: pages.type, offset: pages.offset }).toEqual({ block: 0, first: 1, count: 2, type: 0x02, offset: setup.size + 16 });
    expect(pages.payload).toEqual(new Uint8Array(2 * PAGE).fill(7));
    expect(pages.parts.reduce((n: number, p: Uint8Array) => n + p.byteLength, 0)).toBe(2 * PAGE);
    expect({ block: zero.block, first: zero.first, count: zero.count, size: zero.size }).toEqual({ block: 0, first: 3, count: 1, size: 24 });
    expect([data.device, [...data.payload]]).toEqual([2, [1, 2, 3]]);
    expect([config.device, config.payload.byteLength, end.device]).toEqual([2, 0, 2]);
    expect([iteration.iteration, iteration.dirtyPages]).toEqual([5, 2n ** 60n + 3n]);
    expect([complete.ramPages, complete.zeroPages, complete.deviceBytes]).toEqual([2n, 2n ** 64n - 1n, 3n]);
    expect(abort.text).toBe('cancelled by the user: ünïcødé');
  }

  it('carries the return path', async () => {
    const bytes = await encode('return', [{ name: 'READY' }, { name: 'ERROR', text: 'device 0 refused its state' }, { name: 'LOADED' }]);
    const got = await decode(bytes, { direction: 'return' });
    expect(got.map((r) => [r.name, (r as { text?: string }).text])).toEqual([['READY', undefined], ['ERROR', 'device 0 refused its state'], ['LOADED', undefined]]);
  });

  it('counts the bytes on both sides', async () => {
    const [a, b] = transportPair();
    const writer = new MigrationStreamWriter(a);
    const reader = new MigrationStreamReader(b);
    expect(writer.bytesWritten).toBe(16);
    await writer.write({ name: 'DEVICE_END', device: 1 });
    await writer.write({ name: 'GO' });
    expect(writer.bytesWritten).toBe(16 + 12 + 8);
    await reader.next();
    expect(reader.bytesRead).toBe(16 + 12);
    await reader.next();
    expect(reader.bytesRead).toBe(writer.bytesWritten);
  });
});

describe('the reader refuses', () => {
  it('a bad preamble', async () => {
    await expectFault(concat([preamble({ magic: 'QEVMFILE' }), rec(0x0a)]), 'bad-magic', 'preamble', 0, /magic "QEVMFILE" is not VMMKITMG/);
    await expectFault(preamble({ version: 1 }), 'bad-version', 'preamble', 0, /version 1 is not supported \(this reader knows 2\)/);
    await expectFault(preamble({ flags: 3 }), 'bad-preamble', 'preamble', 0, /flags 0x3 have unknown bits \(only 0x1 is defined\)/);
    await expectFault(preamble({ reserved: 9 }), 'bad-preamble', 'preamble', 0, /reserved bytes are not zero/);
  });

  it('an unknown record type, and a record of the other direction', async () => {
    await expectFault(stream(rec(0x0a), rec(0x42)), 'unknown-type', 'type 0x42', 24, /unknown record type on the forward stream/);
    await expectFault(stream(rec(0x81)), 'unknown-type', 'type 0x81', 16, /forward stream/);
    await expectFault(stream(rec(0x0a)), 'unknown-type', 'type 0x0a', 16, /return stream/, { direction: 'return' });
  });

  it('nonzero flags and reserved bytes and fields', async () => {
    await expectFault(stream(rec(0x0a, undefined, { flags: 0x80 })), 'nonzero-flags', 'GO', 16, /flags 0x80 are not zero/);
    await expectFault(stream(rec(0x06, u32(0), { reserved: 1 })), 'nonzero-reserved', 'DEVICE_END', 16, /header reserved bytes/);
    await expectFault(stream(rec(0x03, ramBody(0, 0, 1, 0, 5))), 'nonzero-reserved', 'RAM_ZERO', 16, /reserved field reserved is 0x5/);
    await expectFault(stream(rec(0x07, concat([u32(1, 1), new Uint8Array(12)]))), 'nonzero-reserved', 'ITERATION', 16, /reserved field/);
  });

  it.for([
    ['GO', rec(0x0a, new Uint8Array(1)), /body length 1 is not 0$/],
    ['DEVICE_END', rec(0x06, u32(0, 0)), /body length 8 is not 4$/],
    ['COMPLETE', rec(0x08, new Uint8Array(16)), /body length 16 is not 28$/],
    ['DEVICE_DATA', rec(0x04, u32(0)), /body length 4 is not 5\.\.1048580/],
    ['DEVICE_CONFIG', rec(0x05, u32(0), { length: 4 + (16 << 20) + 1 }), /is not 4\.\.16777220/],
    ['ABORT', rec(0x09, new Uint8Array(4097).fill(65)), /is not 0\.\.4096/],
    ['SETUP', rec(0x01), /body length 0 is not 1\.\.1048576/],
    ['RAM_PAGES', rec(0x02, ramBody(0, 0, 2, 1)), /body length 4112 is not 16 \+ 2 pages of 4096/],
    ['RAM_PAGES', rec(0x02, u32(0, 0)), /body length 8 is not 16\.\./],
  ] as const)('a %s record of the wrong length', async ([name, bytes, message]) => {
    await expectFault(stream(bytes), 'bad-length', name, 16, message);
  });

  it('an oversized length before its body arrives (nothing is buffered for it)', async () => {
    const [a, b] = transportPair();
    await a.write([stream(rec(0x01, new Uint8Array(0), { length: 2 << 20 }))]);
    const reader = new MigrationStreamReader(b);
    await expect(reader.next()).rejects.toMatchObject({ fault: 'bad-length', record: 'SETUP', offset: 16 });
    const pages = stream(rec(0x02, u32(0, 0, 1 << 20, 0), { length: 16 + (1 << 20) * PAGE }));
    await expectFault(pages, 'bad-count', 'RAM_PAGES', 16, /count 1048576 is outside 1\.\.256/);
  });

  it.for([
    ['RAM_PAGES', rec(0x02, ramBody(0, 0, 0)), /count 0 is outside 1\.\.256/],
    ['RAM_PAGES', rec(0x02, ramBody(0, 0, 257, 257)), /count 257 is outside 1\.\.256/],
    ['RAM_ZERO', rec(0x03, ramBody(0, 0, 0)), /count 0 is outside 1\.\.1048576/],
    ['RAM_ZERO', rec(0x03, ramBody(0, 0, 2 ** 20 + 1)), /count 1048577 is outside/],
  ] as const)('a %s count out of range', async ([name, bytes, message]) => {
    await expectFault(stream(bytes), 'bad-count', name, 16, message);
  });

  it('a RAM run outside the destination guest RAM', async () => {
    const memory: RamLayout = { blocks: [{ pages: 16 }, { pages: 4 }] };
    await expectFault(stream(rec(0x03, ramBody(2, 0, 1))), 'outside-ram', 'RAM_ZERO', 16, /RAM block 2 does not exist \(the destination has 2\)/, { memory });
    await expectFault(stream(rec(0x02, ramBody(1, 3, 2, 2))), 'outside-ram', 'RAM_PAGES', 16, /pages 3\.\.4 are outside RAM block 1 of 4 pages/, { memory });
    await expectFault(stream(rec(0x03, ramBody(0, 0, 16)), rec(0x03, ramBody(0, 15, 2))), 'outside-ram', 'RAM_ZERO', 40, /pages 15\.\.16 are outside RAM block 0 of 16/, { memory });
    // Inside: accepted.
    expect(await decode(stream(rec(0x02, ramBody(1, 2, 2, 2)), rec(0x03, ramBody(0, 0, 16))), { memory })).toHaveLength(2);
  });

  it('text that is not UTF-8, and a SETUP that is not JSON', async () => {
    await expectFault(stream(rec(0x09, new Uint8Array([0x66, 0xff, 0xfe]))), 'bad-payload', 'ABORT', 16, /not valid UTF-8/);
    await expectFault(stream(rec(0x01, new TextEncoder().encode('{"blocks": ['))), 'bad-payload', 'SETUP', 16, /not JSON/);
  });

  it('every later call once it has refused the stream', async () => {
    const [a, b] = transportPair();
    await a.write([stream(rec(0x42), rec(0x0a))]);
    const reader = new MigrationStreamReader(b);
    const first = await reader.next().catch((e: unknown) => e);
    await expect(reader.next()).rejects.toBe(first);
  });
});

describe('a truncated stream', () => {
  it('is refused at every byte offset inside a record, and ends cleanly at every record boundary', async () => {
    const bytes = await encode('forward', EVERY_FORWARD, true);
    const whole = await decode(bytes);
    const starts = [16, ...whole.map((r) => r.offset + r.size)];
    for (let cut = 0; cut <= bytes.byteLength; cut++) {
      const result = await decode(bytes.subarray(0, cut), { chunk: 4093 }).then((records) => ({ records }), (error: unknown) => ({ error }));
      const boundary = starts.indexOf(cut);
      if (boundary >= 0) {
        expect('records' in result && result.records.map((r) => r.name), `cut at ${cut}`).toEqual(whole.slice(0, boundary).map((r) => r.name));
        continue;
      }
      expect('error' in result, `cut at ${cut}`).toBe(true);
      const e = (result as { error: MigrationStreamError }).error;
      const cutRecord = whole.find((r) => r.offset < cut && cut < r.offset + r.size);
      expect(e).toBeInstanceOf(MigrationStreamError);
      expect({ fault: e.fault, record: e.record, offset: e.offset }, `cut at ${cut}`).toEqual(
        cutRecord ? { fault: 'truncated', record: cutRecord.name, offset: cutRecord.offset } : { fault: 'truncated', record: 'preamble', offset: 0 },
      );
      expect(e.message).toMatch(/stream ended after \d+ of/);
    }
  });
});

describe('the writer refuses', () => {
  const refuse = async (record: RecordInit, message: RegExp, direction: StreamDirection = 'forward', checksums = false): Promise<void> => {
    const [a] = transportPair();
    const writer = new MigrationStreamWriter(a, { direction, checksums });
    await expect(writer.write(record as never)).rejects.toThrow(message);
    expect(writer.bytesWritten).toBe(16);
  };

  it('records the reader would refuse, before they leave', async () => {
    await refuse({ name: 'RAM_PAGES', block: 0, first: 0, count: 2, payload: new Uint8Array(PAGE) }, /RAM_PAGES record at offset 16: body length 4112 is not 16 \+ 2 pages of 4096$/);
    await refuse({ name: 'RAM_PAGES', block: 0, first: 0, count: 2, payload: new Uint8Array(PAGE) }, /body length 4116 is not 16 \+ 2 pages of 4096 with their 4-byte digests/, 'forward', true);
    await refuse({ name: 'RAM_ZERO', block: 0, first: 0, count: 0 }, /count 0 is outside/);
    await refuse({ name: 'DEVICE_DATA', device: 0, payload: new Uint8Array(0) }, /body length 4 is not 5\.\./);
    await refuse({ name: 'ABORT', text: 'x'.repeat(4097) }, /body length 4097/);
    await refuse({ name: 'READY' }, /READY record at offset 16: is not a record of the forward stream/);
    await refuse({ name: 'GO' }, /is not a record of the return stream/, 'return');
    await refuse({ name: 'DEVICE_END', device: -1 }, /field device = -1 is not a u32/);
    await refuse({ name: 'COMPLETE', ramPages: 1, zeroPages: 0n, deviceBytes: 0n } as never, /field ramPages = 1 is not a u64/);
  });
});
