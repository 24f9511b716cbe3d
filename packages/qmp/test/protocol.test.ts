// The protocol: greeting, negotiation, ids, errors of malformed input, several clients, events
// to negotiated clients only, and clients that break the stream dropped without harm.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SimHost, simMachine } from '@vmmkit/sim';
import type { Vmm } from '@vmmkit/core';
import { JsonSplitter, QmpServer } from '../src/index.js';
import { TestClient, testVm } from './qmp-test-client.js';

let host: SimHost;
let vmm: Vmm;
let server: QmpServer;

beforeEach(async () => {
  host = new SimHost(simMachine());
  vmm = await testVm(host);
  server = new QmpServer(vmm, { limits: { maxMessageBytes: 4096, maxNesting: 8 } });
});
afterEach(async () => {
  await server.close();
  await vmm.close();
});

describe('greeting and negotiation', () => {
  it('greets with the version and no capabilities', () => {
    const c = new TestClient(server);
    expect(c.received[0]).toEqual({ QMP: { version: { qemu: { major: 11, minor: 1, micro: 0 }, package: expect.stringContaining('vmmkit') }, capabilities: [] } });
  });

  it('refuses commands before qmp_capabilities with CommandNotFound, and a second negotiation', async () => {
    const c = new TestClient(server);
    expect(await c.err('query-status')).toEqual({ class: 'CommandNotFound', desc: "Expecting capabilities negotiation with 'qmp_capabilities'" });
    expect(await c.ok('qmp_capabilities')).toEqual({});
    expect(await c.ok('query-status')).toEqual({ running: true, status: 'running' });
    expect(await c.err('qmp_capabilities')).toEqual({ class: 'CommandNotFound', desc: 'Capabilities negotiation is already complete, command ignored' });
  });

  it('refuses the oob capability it does not offer', async () => {
    const c = new TestClient(server);
    expect(await c.err('qmp_capabilities', { enable: ['oob'] })).toEqual({ class: 'GenericError', desc: "Capability 'oob' not available" });
    expect(await c.err('qmp_capabilities', { enable: ['bogus'] })).toMatchObject({ desc: "Parameter 'enable[0]' does not accept value 'bogus'" });
  });
});

describe('requests', () => {
  it('echoes any JSON id, on returns and on errors', async () => {
    const c = await TestClient.negotiated(server);
    c.send('{"execute":"query-status","id":{"n":[1,2]}}');
    c.send('{"execute":"nope","id":7}');
    expect(await c.until((m) => m.id?.n !== undefined)).toEqual({ return: { running: true, status: 'running' }, id: { n: [1, 2] } });
    expect(await c.until((m) => m.id === 7)).toEqual({ error: { class: 'CommandNotFound', desc: 'The command nope has not been found' }, id: 7 });
  });

  it.each([
    ['[1]', 'QMP input must be a JSON object'],
    ['{"arguments":{}}', "QMP input lacks member 'execute'"],
    ['{"execute":3}', "QMP input member 'execute' must be a string"],
    ['{"execute":"stop","arguments":[]}', "QMP input member 'arguments' must be an object"],
    ['{"execute":"stop","extra":1}', "QMP input member 'extra' is unexpected"],
    ['{"execute":"device_del"}', "Parameter 'id' is missing"],
    ['{"execute":"device_del","arguments":{"id":5}}', "Invalid parameter type for 'id', expected: string"],
    ['{"execute":"stop","arguments":{"now":true}}', "Parameter 'now' is unexpected"],
  ])('answers %s with a GenericError and keeps the client', async (input, desc) => {
    const c = await TestClient.negotiated(server);
    c.send(input);
    expect(await c.until((m) => 'error' in m)).toEqual({ error: { class: 'GenericError', desc } });
    expect(await c.ok('query-status')).toMatchObject({ status: 'running' });
  });

  it('takes messages split anywhere and several in one chunk, strings with braces included', async () => {
    const c = await TestClient.negotiated(server);
    const text = '{"execute":"query-status","id":"a}{\\"b"}{"execute":"query-version","id":2}';
    for (const ch of text) c.send(ch);
    expect((await c.until((m) => m.id === 'a}{"b')).return).toMatchObject({ status: 'running' });
    expect((await c.until((m) => m.id === 2)).return).toMatchObject({ qemu: { major: 11 } });
  });
});

describe('clients that break the stream', () => {
  it.each([
    ['garbage', 'hello\n', /invalid character/],
    ['a huge message', `{"execute":"stop","arguments":{"x":"${'a'.repeat(5000)}"}}`, /token size limit/],
    ['deep nesting', `{"execute":"stop","arguments":${'['.repeat(20)}`, /nesting depth limit/],
    ['invalid JSON', '{"execute" "stop"}', /JSON parse error/],
  ])('drops a client sending %s; the VM and the other clients carry on', async (_what, input, desc) => {
    const other = await TestClient.negotiated(server);
    const bad = await TestClient.negotiated(server);
    bad.send(input);
    await bad.session.settled();
    expect(bad.ended).toBe(true);
    expect(bad.received.at(-1)).toMatchObject({ error: { class: 'GenericError', desc: expect.stringMatching(desc) } });
    expect(server.sessions).toEqual([other.session]);
    expect(await other.ok('query-status')).toEqual({ running: true, status: 'running' });
    expect(vmm.running).toBe(true);
  });

  it('forgets a client that left half a message, and closes the descriptors it passed', async () => {
    const fd = host.eventfd(0, 0);
    const c = await TestClient.negotiated(server);
    c.send('{"execute":"getfd","arguments":{"fdname":"x"}');
    c.session.receive(Buffer.from(''), [fd]);
    c.session.end();
    expect(server.sessions).toEqual([]);
    expect(() => host.close(fd)).toThrow(/EBADF/);
  });
});

describe('events', () => {
  it('go to every negotiated client with a timestamp, and to no client still negotiating', async () => {
    const a = await TestClient.negotiated(server);
    const b = await TestClient.negotiated(server);
    const shy = new TestClient(server);
    const before = Date.now();
    expect(await a.ok('stop')).toEqual({});
    for (const c of [a, b]) {
      const e = await c.event('STOP');
      expect(e).toEqual({ event: 'STOP', timestamp: { seconds: expect.any(Number), microseconds: expect.any(Number) } });
      expect(e.timestamp.seconds * 1000 + e.timestamp.microseconds / 1000).toBeGreaterThanOrEqual(before - 1);
      expect(e.timestamp.microseconds).toBeLessThan(1e6);
    }
    expect(shy.events).toEqual([]);
  });
});

describe('JsonSplitter', () => {
  it('refuses a closing bracket before any opener', () => {
    expect(() => new JsonSplitter().feed(Buffer.from('}'))).toThrow(/invalid character 0x7d/);
  });

  it('holds an unfinished message and says so', () => {
    const s = new JsonSplitter();
    expect(s.feed(Buffer.from(' {"a": ["}"'))).toEqual([]);
    expect(s.pending).toBe(true);
    expect(s.feed(Buffer.from(']} '))).toEqual(['{"a": ["}"]}']);
    expect(s.pending).toBe(false);
  });
});
