// The QMP client against a scripted peer on a real Unix socket (no QEMU): greeting and
// capabilities negotiation, answers matched by id, errors, events queued or awaited.

import { createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readLines } from '../../support/line-reader.js';
import { QemuPeerError } from '../../support/peer-error.js';
import { QmpClient } from '../../support/qmp-client.js';

const GREETING = { QMP: { version: { qemu: { major: 11, minor: 1, micro: 3 }, package: 'test' }, capabilities: ['oob'] } };
const event = (name: string) => ({ event: name, timestamp: { seconds: 1, microseconds: 2 } });

describe('QmpClient', () => {
  let dir: string;
  let server: Server;
  let path: string;
  let peer: Socket | undefined;
  let client: QmpClient | undefined;
  /** What the fake QEMU does with each command it receives. */
  let onCommand: (cmd: { execute: string; id: number }, socket: Socket) => void;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmmkit-qmp-'));
    path = join(dir, 'qmp.sock');
    onCommand = (cmd, s) => s.write(`${JSON.stringify({ return: {}, id: cmd.id })}\n`);
    server = createServer((socket) => {
      peer = socket;
      socket.write(`${JSON.stringify(GREETING)}\n`);
      readLines(socket, (line) => onCommand(JSON.parse(line) as { execute: string; id: number }, socket));
    });
  });

  afterEach(() => {
    client?.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const listen = (): Promise<void> => new Promise((resolve) => server.listen(path, resolve));

  it('waits for the socket to appear, reads the greeting and negotiates capabilities', async () => {
    const seen: string[] = [];
    const inner = onCommand;
    onCommand = (cmd, s) => { seen.push(cmd.execute); inner(cmd, s); };
    const connecting = QmpClient.connect(path, 5_000);
    await new Promise((r) => setTimeout(r, 50));
    await listen();
    const { client: c, greeting } = await connecting;
    client = c;
    expect(greeting.version.qemu).toEqual({ major: 11, minor: 1, micro: 3 });
    expect(seen).toEqual(['qmp_capabilities']);
  });

  it("matches answers to commands by id, whatever their order, and rejects QEMU's errors", async () => {
    await listen();
    const held: { id: number; execute: string }[] = [];
    ({ client } = await QmpClient.connect(path));
    onCommand = (cmd, s) => {
      held.push(cmd);
      if (held.length < 2) return;
      // Answer the second first, then the first with an error.
      s.write(`${JSON.stringify({ return: { n: 2 }, id: held[1]!.id })}\n`);
      s.write(`${JSON.stringify({ error: { class: 'GenericError', desc: 'no such thing' }, id: held[0]!.id })}\n`);
    };
    const first = client.execute('query-nothing');
    const second = client.execute<{ n: number }>('query-two', { x: 1 });
    expect(await second).toEqual({ n: 2 });
    await expect(first).rejects.toThrow('QMP query-nothing: GenericError: no such thing');
  });

  it('keeps events until asked for, and hands a later one to whoever waits', async () => {
    await listen();
    ({ client } = await QmpClient.connect(path));
    peer!.write(`${JSON.stringify(event('RESET'))}\n${JSON.stringify(event('STOP'))}\n`);
    await new Promise((r) => setTimeout(r, 20));
    expect(client.pendingEvents.map((e) => e.event)).toEqual(['RESET', 'STOP']);
    expect((await client.waitForEvent('STOP')).event).toBe('STOP');
    const waiting = client.waitForEvent('SHUTDOWN');
    peer!.write(`${JSON.stringify(event('SHUTDOWN'))}\n`);
    expect((await waiting).event).toBe('SHUTDOWN');
    expect(client.pendingEvents.map((e) => e.event)).toEqual(['RESET']);
    await expect(client.waitForEvent('POWERDOWN', 30)).rejects.toThrow('no QMP event POWERDOWN within 30 ms');
  });

  it('rejects pending commands when QEMU closes the session, and reports it once', async () => {
    await listen();
    ({ client } = await QmpClient.connect(path));
    onCommand = () => peer!.destroy();
    let closes = 0;
    client.onClose(() => closes++);
    await expect(client.execute('quit')).rejects.toBeInstanceOf(QemuPeerError);
    await expect(client.execute('query-status')).rejects.toThrow(/closed the QMP connection/);
    expect(closes).toBe(1);
  });

  it('gives up on a socket that never appears, naming it', async () => {
    await expect(QmpClient.connect(join(dir, 'never.sock'), 50)).rejects.toThrow(/cannot connect to QMP at .*never.sock: ENOENT/);
  });
});
