// The Unix socket: a stale socket file is replaced as QEMU does, anything else at the path is
// refused, clients are served at once, and closing the server ends them and removes the file.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { ConfigError, type Vmm } from '@vmmkit/core';
import { SimHost, simMachine } from '@vmmkit/sim';
import { QmpServer } from '../src/index.js';
import { testVm } from './qmp-test-client.js';

let dir: string;
let vmm: Vmm;
let server: QmpServer;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vmmkit-qmp-socket-'));
  vmm = await testVm(new SimHost(simMachine()));
  server = new QmpServer(vmm);
});
afterEach(async () => {
  await server.close();
  await vmm.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Connect, send `text`, and collect what comes back until the server closes or `lines` arrived. */
function talk(path: string, text: string, lines: number): Promise<{ lines: Record<string, unknown>[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const got: Record<string, unknown>[] = [];
    let buffer = '';
    const socket = net.connect(path, () => socket.write(text));
    socket.on('error', reject);
    socket.on('data', (d) => {
      buffer += d.toString();
      const parts = buffer.split('\r\n');
      buffer = parts.pop()!;
      got.push(...parts.map((p) => JSON.parse(p) as Record<string, unknown>));
      if (got.length >= lines) {
        socket.destroy();
        resolve({ lines: got, closed: false });
      }
    });
    socket.on('close', () => resolve({ lines: got, closed: true }));
  });
}

it('serves clients on the socket and removes it when closed', async () => {
  const path = join(dir, 'qmp.sock');
  await server.listen(path);
  const [a, b] = await Promise.all([
    talk(path, '{"execute":"qmp_capabilities"}{"execute":"query-status","id":1}', 3),
    talk(path, '{"execute":"qmp_capabilities"}{"execute":"query-version","id":2}', 3),
  ]);
  expect(a.lines[2]).toEqual({ return: { running: true, status: 'running' }, id: 1 });
  expect(b.lines[2]).toMatchObject({ return: { qemu: { major: 11 } }, id: 2 });
  await server.close();
  expect(existsSync(path)).toBe(false);
});

it('replaces a stale socket file, and refuses a path that is not a socket', async () => {
  const stale = join(dir, 'stale.sock');
  // A server killed without removing its socket leaves the file behind.
  const old = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => console.log('up'))`]);
  await new Promise((r) => old.stdout.once('data', r));
  old.kill('SIGKILL');
  await new Promise((r) => old.once('exit', r));
  expect(existsSync(stale)).toBe(true);
  await server.listen(stale);
  expect((await talk(stale, '', 1)).lines[0]).toHaveProperty('QMP');

  const file = join(dir, 'file');
  writeFileSync(file, 'data');
  await expect(server.listen(file)).rejects.toThrow(expect.objectContaining({ option: 'qmp', message: expect.stringContaining('is not a socket') }));
  await expect(server.listen(join(dir, 'no', 'such', 'dir.sock'))).rejects.toBeInstanceOf(ConfigError);
});

it('a client that breaks the stream is answered and hung up on; the next client is served', async () => {
  const path = join(dir, 'qmp.sock');
  await server.listen(path);
  const bad = await talk(path, 'GET / HTTP/1.1\r\n\r\n', 10);
  expect(bad.closed).toBe(true);
  expect(bad.lines[1]).toMatchObject({ error: { class: 'GenericError', desc: expect.stringContaining('invalid character') } });
  expect((await talk(path, '{"execute":"qmp_capabilities","id":0}', 2)).lines[1]).toEqual({ return: {}, id: 0 });
});

it('drops a client that stops reading once its unread output passes the bound; the others carry on', async () => {
  const path = join(dir, 'qmp.sock');
  await server.listen(path, { maxUnreadBytes: 64 << 10 });
  const sleeper = net.connect(path, () => sleeper.write('{"execute":"qmp_capabilities"}'));
  let closed = false;
  sleeper.on('close', () => (closed = true));
  sleeper.on('error', () => undefined);
  // Read the greeting and the answer, then never again.
  await new Promise<void>((resolve) => {
    let text = '';
    const onData = (d: Buffer): void => {
      text += d.toString();
      if (text.split('\r\n').length > 2) {
        sleeper.off('data', onData);
        sleeper.pause();
        resolve();
      }
    };
    sleeper.on('data', onData);
  });
  expect(server.sessions.filter((s) => s.negotiated)).toHaveLength(1);
  // Far more than the socket's kernel buffer and the bound.
  for (let i = 0; i < 40_000 && server.sessions.length > 0; i++) {
    server.emit('VFIO_MIGRATION', { 'device-id': 'nic0', 'qom-path': '/machine/peripheral/nic0', 'device-state': 'running' });
    if (i % 1000 === 0) await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 100));
  expect(server.sessions).toEqual([]);
  // The client learns it once it reads again.
  sleeper.resume();
  await new Promise((r) => setTimeout(r, 100));
  expect(closed).toBe(true);
  expect((await talk(path, '{"execute":"qmp_capabilities","id":0}', 2)).lines[1]).toEqual({ return: {}, id: 0 });
});

/** A client that stays connected, collecting what it is sent. */
function stayingClient(path: string): Promise<{ lines: Record<string, any>[]; socket: net.Socket; closed: () => boolean }> {
  return new Promise((resolve) => {
    const lines: Record<string, any>[] = [];
    let buffer = '';
    let closed = false;
    const socket = net.connect(path, () => resolve({ lines, socket, closed: () => closed }));
    socket.on('error', () => undefined);
    socket.on('close', () => (closed = true));
    socket.on('data', (d) => {
      buffer += d.toString();
      const parts = buffer.split('\r\n');
      buffer = parts.pop()!;
      lines.push(...parts.map((p) => JSON.parse(p) as Record<string, any>));
    });
  });
}

const until = async (done: () => boolean): Promise<void> => {
  for (let i = 0; i < 500 && !done(); i++) await new Promise((r) => setTimeout(r, 10));
};

it('drops a client sending a huge message (a stop that never ends), garbage, or half a message and leaving; the VM and the other client carry on', async () => {
  const path = join(dir, 'qmp.sock');
  await server.listen(path);
  const other = await stayingClient(path);
  other.socket.write('{"execute":"qmp_capabilities"}');
  await until(() => other.lines.length >= 2);
  expect(server.sessions).toHaveLength(1);

  // A `stop` whose argument goes on past the 1 MiB bound: cut off there, never run.
  const huge = await stayingClient(path);
  huge.socket.write('{"execute":"qmp_capabilities"}{"execute":"stop","arguments":{"x":"');
  const chunk = 'a'.repeat(64 << 10);
  for (let i = 0; i < 20 && !huge.closed(); i++) {
    huge.socket.write(chunk);
    await new Promise((r) => setTimeout(r, 5));
  }
  await until(huge.closed);
  expect(huge.closed()).toBe(true);
  // The greeting, the negotiation, and the reason, unless the client, still writing, was reset
  // before it read it (the kernel discards what a reset connection had not delivered).
  expect(huge.lines.slice(2)).toEqual(huge.lines.length > 2 ? [{ error: { class: 'GenericError', desc: expect.stringContaining('JSON token size limit exceeded') } }] : []);

  const garbage = await stayingClient(path);
  garbage.socket.write('{"execute":"qmp_capabilities"}\r\n\x00\x01binary');
  await until(garbage.closed);
  expect(garbage.lines.at(-1)).toMatchObject({ error: { class: 'GenericError', desc: expect.stringContaining('invalid character 0x00') } });

  const half = await stayingClient(path);
  half.socket.end('{"execute":"qmp_capabilities"}{"execute":"stop"');
  await until(() => server.sessions.length === 1);

  expect(server.sessions).toHaveLength(1);
  expect(vmm.running).toBe(true);
  other.socket.write('{"execute":"query-status","id":7}');
  await until(() => other.lines.some((l) => l.id === 7));
  expect(other.lines.find((l) => l.id === 7)).toEqual({ return: { running: true, status: 'running' }, id: 7 });
  // It heard no STOP: nothing the others sent reached the VM.
  expect(other.lines.filter((l) => 'event' in l)).toEqual([]);
  other.socket.destroy();
});
