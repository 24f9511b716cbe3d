// The transports: a whole migration stream (64 MiB of RAM, device data, the return path) arrives
// byte-identical over an in-process pair, TCP and a Unix socket; connection loss fails the other
// side instead of hanging; bandwidth limits hold; socket errors name the address.

import { createHash, randomFillSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, DirtyBitmap, GuestMemory, VmmError } from '@vmmkit/core';
import { SimHost } from '@vmmkit/sim';
import {
  applyRamRecord, connectMigration, listenMigration, MigrationStreamError, MigrationStreamReader, MigrationStreamWriter,
  MigrationTransportError, parseSocketAddress, sendDirtyPages, SocketTransport, transportPair, type MigrationTransport,
} from '../src/index.js';

const PAGE = 4096;
const dir = mkdtempSync(join(tmpdir(), 'vmmkit-stream-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let sockets = 0;

type Kind = 'pair' | 'tcp' | 'unix';

/** A connected source and destination over `kind`. */
async function connect(kind: Kind, pairOptions?: Parameters<typeof transportPair>[0]): Promise<[source: MigrationTransport, destination: MigrationTransport]> {
  if (kind === 'pair') return transportPair(pairOptions);
  const listener = await listenMigration(kind === 'tcp' ? 'tcp:127.0.0.1:0' : `unix:${join(dir, `s${sockets++}.sock`)}`);
  const [destination, source] = await Promise.all([listener.accept({ timeoutMs: 5000 }), connectMigration(listener.name, { timeoutMs: 5000 })]);
  await listener.close();
  return [source, destination];
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** 64 MiB of guest RAM: random data with zero stretches of 1 to 64 pages in between. */
function sourceMemory(): GuestMemory {
  const memory = GuestMemory.allocate(new SimHost(), [{ gpa: 0n, size: 64n << 20n }, { gpa: 1n << 32n, size: 1n << 20n }]);
  for (const block of memory.blocks) {
    randomFillSync(block.mapping.bytes);
    let seed = block.pages;
    for (let page = 0; page < block.pages; page += 97) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const n = Math.min(1 + ((seed >>> 16) % 64), block.pages - page);
      block.mapping.view(page * PAGE, n * PAGE).fill(0);
    }
  }
  return memory;
}

/** The source side: SETUP, wait for READY, all RAM, 3 MiB of device state, COMPLETE, GO, end, wait for LOADED. */
async function runSource(transport: MigrationTransport, memory: GuestMemory, device: Uint8Array): Promise<{ pages: number; zeroPages: number }> {
  const writer = new MigrationStreamWriter(transport);
  const back = new MigrationStreamReader(transport, { direction: 'return' });
  await writer.write({ name: 'SETUP', json: { blocks: memory.blocks.map((b) => b.pages) } });
  expect((await back.expectNext()).name).toBe('READY');
  let pages = 0;
  let zeroPages = 0;
  for (const [i, block] of memory.blocks.entries()) {
    const dirty = new DirtyBitmap(block.pages);
    dirty.fill();
    const sent = await sendDirtyPages(writer, memory, i, dirty);
    pages += sent.pages;
    zeroPages += sent.zeroPages;
  }
  await writer.write({ name: 'ITERATION', iteration: 0, dirtyPages: BigInt(pages + zeroPages) });
  for (let at = 0; at < device.byteLength; at += 1 << 20) await writer.write({ name: 'DEVICE_DATA', device: 0, payload: device.subarray(at, at + (1 << 20)) });
  await writer.write({ name: 'DEVICE_END', device: 0 });
  await writer.write({ name: 'COMPLETE', ramPages: BigInt(pages), zeroPages: BigInt(zeroPages), deviceBytes: BigInt(device.byteLength) });
  await writer.write({ name: 'GO' });
  await writer.end();
  expect((await back.expectNext()).name).toBe('LOADED');
  expect(await back.next()).toBeUndefined();
  return { pages, zeroPages };
}

/** The destination side: check and load everything, answer READY and LOADED. */
async function runDestination(transport: MigrationTransport, memory: GuestMemory): Promise<{ device: Uint8Array; totals: bigint[] }> {
  const reader = new MigrationStreamReader(transport, { memory });
  const back = new MigrationStreamWriter(transport, { direction: 'return' });
  const device: Uint8Array[] = [];
  const counted = { ramPages: 0n, zeroPages: 0n };
  let complete: bigint[] = [];
  for (let r = await reader.next(); r; r = await reader.next()) {
    if (r.name === 'SETUP') await back.write({ name: 'READY' });
    else if (r.name === 'RAM_PAGES' || r.name === 'RAM_ZERO') counted[r.name === 'RAM_PAGES' ? 'ramPages' : 'zeroPages'] += BigInt(applyRamRecord(memory, r));
    else if (r.name === 'DEVICE_DATA') device.push(r.payload.slice());
    else if (r.name === 'COMPLETE') complete = [r.ramPages, r.zeroPages, r.deviceBytes];
    else if (r.name === 'GO') await back.write({ name: 'LOADED' });
  }
  await back.end();
  const bytes = Buffer.concat(device);
  expect(complete).toEqual([counted.ramPages, counted.zeroPages, BigInt(bytes.byteLength)]);
  return { device: bytes, totals: complete };
}

describe.for(['pair', 'tcp', 'unix'] as const)('over %s', (kind) => {
  it('a whole migration stream arrives byte-identical (64 MiB of RAM with zero pages, device state, return path)', async () => {
    const source = sourceMemory();
    const destination = GuestMemory.allocate(new SimHost(), source.blocks.map((b) => ({ gpa: b.gpa, size: b.size })));
    // Stale destination contents where the source has zero pages: RAM_ZERO must clear them.
    destination.blocks[0]!.mapping.bytes.fill(0x5a, 0, 8 << 20);
    const device = randomFillSync(new Uint8Array(3 * (1 << 20) + 123));
    const [s, d] = await connect(kind);
    const [sent, received] = await Promise.all([runSource(s, source, device), runDestination(d, destination)]);
    expect(sent.zeroPages).toBeGreaterThan(1000);
    expect(received.totals).toEqual([BigInt(sent.pages), BigInt(sent.zeroPages), BigInt(device.byteLength)]);
    for (const [i, block] of source.blocks.entries()) expect(sha256(destination.blocks[i]!.mapping.bytes)).toBe(sha256(block.mapping.bytes));
    expect(sha256(received.device)).toBe(sha256(device));
  }, 30_000);

  it('receives page data in place, straight into guest memory, unless told not to', async () => {
    for (const inPlace of [true, false]) {
      const source = GuestMemory.allocate(new SimHost(), [{ gpa: 0n, size: 8n << 20n }]);
      randomFillSync(source.blocks[0]!.mapping.bytes);
      const destination = GuestMemory.allocate(new SimHost(), [{ gpa: 0n, size: 8n << 20n }]);
      const guest = destination.blocks[0]!.mapping.bytes;
      const dirty = new DirtyBitmap(source.blocks[0]!.pages);
      dirty.fill();
      const [s, d] = await connect(kind);
      const writer = new MigrationStreamWriter(s);
      const sending = sendDirtyPages(writer, source, 0, dirty).then(() => writer.end());
      const reader = new MigrationStreamReader(d, { memory: destination, inPlace });
      let aliased = 0;
      for (let r = await reader.next(); r; r = await reader.next()) {
        if (r.name !== 'RAM_PAGES') continue;
        const at = r.first * PAGE;
        aliased += r.parts.filter((p) => p.buffer === guest.buffer && p.byteOffset === guest.byteOffset + at).length;
        applyRamRecord(destination, r);
      }
      await sending;
      expect(aliased).toBe(inPlace ? 8 : 0);
      expect(sha256(guest)).toBe(sha256(source.blocks[0]!.mapping.bytes));
    }
  }, 20_000);

  it('refuses a RAM_PAGES record cut short while receiving it in place', async () => {
    const [s, d] = await connect(kind);
    // No checksums: the RAM_PAGES header below is hand-built without page digests.
    const writer = new MigrationStreamWriter(s, { checksums: false });
    await writer.write({ name: 'RAM_ZERO', block: 0, first: 0, count: 1 });
    await writer.flush();
    const header = new Uint8Array(24);
    const view = new DataView(header.buffer);
    view.setUint8(0, 0x02);
    view.setUint32(4, 16 + 64 * PAGE, true);
    view.setUint32(12, 4, true);
    view.setUint32(16, 64, true);
    await s.write([header, new Uint8Array(10 * PAGE + 5).fill(1)]);
    await s.end();
    const memory = GuestMemory.allocate(new SimHost(), [{ gpa: 0n, size: 1n << 20n }]);
    const reader = new MigrationStreamReader(d, { memory });
    expect((await reader.next())?.name).toBe('RAM_ZERO');
    await expect(reader.next()).rejects.toMatchObject({
      fault: 'truncated', record: 'RAM_PAGES', offset: 40, message: expect.stringMatching(/stream ended after 40989 of the record's 262168 bytes/),
    });
  }, 5000);

  it('stops reading while the reader falls behind, and catches up', async () => {
    const [s, d] = await connect(kind);
    const writer = new MigrationStreamWriter(s);
    const data = randomFillSync(new Uint8Array(24 << 20));
    const writing = (async () => {
      for (let at = 0; at < data.byteLength; at += 1 << 20) await writer.write({ name: 'DEVICE_DATA', device: 1, payload: data.subarray(at, at + (1 << 20)) });
      await writer.end();
    })();
    await new Promise((r) => setTimeout(r, 200));
    const reader = new MigrationStreamReader(d);
    const got: Uint8Array[] = [];
    for (let r = await reader.next(); r; r = await reader.next()) if (r.name === 'DEVICE_DATA') got.push(r.payload.slice());
    await writing;
    expect(sha256(Buffer.concat(got))).toBe(sha256(data));
  }, 20_000);

  it('a source lost in the middle of a record fails the destination, not hangs', async () => {
    const [s, d] = await connect(kind);
    const writer = new MigrationStreamWriter(s, { checksums: false });
    await writer.write({ name: 'DEVICE_END', device: 0 });
    await writer.flush();
    // A RAM_PAGES header and half its data, then the connection is gone.
    const header = new Uint8Array(24);
    new DataView(header.buffer).setUint8(0, 0x02);
    new DataView(header.buffer).setUint32(4, 16 + 2 * PAGE, true);
    new DataView(header.buffer).setUint32(16, 2, true);
    await s.write([header, new Uint8Array(PAGE)]);
    const reader = new MigrationStreamReader(d);
    expect((await reader.next())?.name).toBe('DEVICE_END');
    const pending = reader.next();
    setTimeout(() => s.destroy(), 20);
    const error = await pending.catch((e: unknown) => e);
    // TCP and the pair report the reset peer; a Unix socket shows only the end, inside a record.
    expect(error).toBeInstanceOf(kind === 'unix' ? MigrationStreamError : MigrationTransportError);
    expect((error as Error).message).toMatch(kind === 'unix' ? /RAM_PAGES record at offset 28: stream ended after/ : /connection lost/);
  }, 5000);

  it('a destination lost while the source is held up by backpressure fails the source write', async () => {
    const [s, d] = await connect(kind);
    const writer = new MigrationStreamWriter(s);
    const memory = GuestMemory.allocate(new SimHost(), [{ gpa: 0n, size: 64n << 20n }]);
    randomFillSync(memory.blocks[0]!.mapping.bytes);
    const dirty = new DirtyBitmap(memory.blocks[0]!.pages);
    dirty.fill();
    // Nobody reads at the destination: the source blocks on backpressure, then the peer is gone.
    const sending = sendDirtyPages(writer, memory, 0, dirty);
    setTimeout(() => d.destroy(), 100);
    const error = await sending.then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(MigrationTransportError);
    expect((error as MigrationTransportError).transport).toBe(s.name);
    // The writer stays failed.
    await expect(writer.write({ name: 'GO' })).rejects.toBe(error);
  }, 5000);

  it('a destination lost while the source waits on the return path fails the source read', async () => {
    const [s, d] = await connect(kind);
    const back = new MigrationStreamWriter(d, { direction: 'return' });
    await back.write({ name: 'READY' });
    const reader = new MigrationStreamReader(s, { direction: 'return' });
    expect((await reader.expectNext()).name).toBe('READY');
    const waiting = reader.expectNext();
    setTimeout(() => d.destroy(), 20);
    const error = await waiting.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(VmmError);
    if (kind === 'unix') expect((error as MigrationStreamError).message).toMatch(/end of stream at offset 24: stream ended where a record was expected/);
    else expect(error).toBeInstanceOf(MigrationTransportError);
  }, 5000);

  it('honours the writer bandwidth limit, roughly', async () => {
    const [s, d] = await connect(kind);
    const writer = new MigrationStreamWriter(s, { maxBandwidth: 8 << 20 });
    const started = performance.now();
    const reading = (async () => {
      const reader = new MigrationStreamReader(d);
      let n = 0;
      while (await reader.next()) n++;
      return n;
    })();
    for (let i = 0; i < 16; i++) await writer.write({ name: 'DEVICE_DATA', device: 0, payload: new Uint8Array(128 << 10) });
    await writer.end();
    expect(await reading).toBe(16);
    // 2 MiB at 8 MiB/s: 250 ms (the first batch goes out without waiting).
    const ms = performance.now() - started;
    expect(ms).toBeGreaterThan(180);
    expect(ms).toBeLessThan(1500);
  }, 5000);
});

describe('transportPair', () => {
  it('honours its bandwidth limit, roughly', async () => {
    const [s, d] = transportPair({ bandwidth: 4 << 20 });
    const started = performance.now();
    for (let i = 0; i < 8; i++) await s.write([new Uint8Array(128 << 10)]);
    await s.end();
    let bytes = 0;
    for (let c = await d.read(); c; c = await d.read()) bytes += c.byteLength;
    expect(bytes).toBe(1 << 20);
    const ms = performance.now() - started;
    expect(ms).toBeGreaterThan(180);
    expect(ms).toBeLessThan(1500);
  });

  it('holds the writer back until the reader catches up', async () => {
    const [s, d] = transportPair({ highWaterMark: 1000 });
    let done = false;
    const writing = s.write([new Uint8Array(2000)]).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 10));
    expect(done).toBe(false);
    await d.read();
    await writing;
    expect(done).toBe(true);
  });
});

describe('socket transports', () => {
  it('parse QEMU-style addresses', () => {
    expect(parseSocketAddress('tcp:127.0.0.1:4444')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 4444 });
    expect(parseSocketAddress('tcp:[::1]:0')).toEqual({ kind: 'tcp', host: '::1', port: 0 });
    expect(parseSocketAddress('unix:/run/vm.sock')).toEqual({ kind: 'unix', path: '/run/vm.sock' });
    for (const bad of ['tcp:host', 'tcp::4444', 'tcp:h:99999', 'unix:', 'exec:cat', '/run/vm.sock']) {
      expect(() => parseSocketAddress(bad), bad).toThrow(ConfigError);
      expect(() => parseSocketAddress(bad), bad).toThrow(bad);
    }
  });

  it('take port 0 (any free port) only to listen on, never to connect to', async () => {
    expect(parseSocketAddress('tcp:127.0.0.1:0', 'listen')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 0 });
    for (const zero of ['tcp:127.0.0.1:0', 'tcp:[::1]:00']) {
      expect(() => parseSocketAddress(zero, 'connect'), zero).toThrow(expect.objectContaining({
        name: 'ConfigError', option: 'uri', value: zero, message: `migration address "${zero}" has port 0, which can be listened on but not connected to`,
      }));
      expect(() => connectMigration(zero), zero).toThrow(ConfigError);
    }
    expect(parseSocketAddress('tcp:127.0.0.1:1', 'connect')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 1 });
    expect(() => parseSocketAddress('tcp:127.0.0.1:65536', 'connect')).toThrow(ConfigError);
  });

  it('name the address when they cannot listen or connect', async () => {
    const listener = await listenMigration('tcp:127.0.0.1:0');
    const taken = listener.name;
    await expect(listenMigration(taken)).rejects.toMatchObject({ name: 'MigrationTransportError', transport: taken, errno: 'EADDRINUSE' });
    await listener.close();
    await expect(connectMigration(taken)).rejects.toThrow(new RegExp(`migration transport ${taken}: cannot connect: .*ECONNREFUSED`));
    const missing = `unix:${join(dir, 'nobody.sock')}`;
    await expect(connectMigration(missing)).rejects.toMatchObject({ transport: missing, errno: 'ENOENT' });
  });

  it('give up accepting after the timeout, naming the address', async () => {
    const listener = await listenMigration(`unix:${join(dir, 'lonely.sock')}`);
    await expect(listener.accept({ timeoutMs: 50 })).rejects.toThrow(`migration transport ${listener.name}: no connection within 50 ms`);
    await listener.close();
  });

  // /proc/net/tcp's `tr` column is 2 while a socket's keepalive timer runs; `tm->when` is the time
  // to its next probe, in USER_HZ (100) ticks.
  it.runIf(existsSync('/proc/net/tcp'))('turn TCP keepalive on at both ends, probing after 10 s of silence', async () => {
    const [source, destination] = (await connect('tcp')) as [SocketTransport, SocketTransport];
    const timers = (socket: net.Socket): { timer: number; seconds: number } | undefined => {
      const local = `0100007F:${socket.localPort!.toString(16).toUpperCase().padStart(4, '0')}`;
      const line = readFileSync('/proc/net/tcp', 'utf8').split('\n').map((l) => l.trim().split(/\s+/)).find((f) => f[1] === local);
      if (!line) return undefined;
      const [timer, when] = line[5]!.split(':');
      return { timer: parseInt(timer!, 16), seconds: parseInt(when!, 16) / 100 };
    };
    for (const end of [source, destination]) {
      const t = timers(end.socket);
      expect(t?.timer).toBe(2);
      expect(t!.seconds).toBeGreaterThan(5);
      expect(t!.seconds).toBeLessThanOrEqual(10);
    }
    source.destroy();
    destination.destroy();
  });

  it('count the bytes received, read or not (what an idle timeout watches)', async () => {
    for (const kind of ['pair', 'tcp', 'unix'] as const) {
      const [s, d] = await connect(kind);
      expect(d.bytesReceived).toBe(0);
      await s.write([new Uint8Array(5000), new Uint8Array(3000)]);
      await s.end();
      while ((d.bytesReceived ?? 0) < 8000) await new Promise((r) => setTimeout(r, 5));
      expect(d.bytesReceived).toBe(8000);
      d.destroy();
    }
  });

  it('deliver what was written before end() even when the writer destroys its end at once', async () => {
    for (const kind of ['pair', 'tcp', 'unix'] as const) {
      const [s, d] = await connect(kind);
      await s.write([new TextEncoder().encode('last word')]);
      await s.end();
      s.destroy();
      const chunks: Uint8Array[] = [];
      try {
        for (let c = await d.read(); c; c = await d.read()) chunks.push(c);
      } catch {
        // The loss may follow the data: what matters is that the data came first.
      }
      expect(Buffer.concat(chunks).toString(), kind).toBe('last word');
      d.destroy();
    }
  });

  it('accept one connection only', async () => {
    const listener = await listenMigration('tcp:127.0.0.1:0');
    const first = await connectMigration(listener.name);
    const accepted = await listener.accept();
    const address = listener.address as { port: number };
    const second = await new Promise<string>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port: address.port });
      socket.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      socket.on('close', () => resolve('closed'));
    });
    expect(['ECONNREFUSED', 'ECONNRESET', 'closed']).toContain(second);
    await first.end();
    expect(await accepted.read()).toBeUndefined();
    accepted.destroy();
    await listener.close();
  });
});
