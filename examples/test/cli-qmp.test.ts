// `vmmkit run --qmp`: QMP on a Unix socket of a running VM, with a plain socket client: the
// greeting and negotiation, several clients at once, one that sends garbage dropped while the
// others carry on, hot-plug, and quit ending the process with status 0.

import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { runCli } from '../src/cli/cli.js';
import { EXIT_OK } from '../src/cli/exit-codes.js';
import { testIo } from './cli-test-io.js';

let dir: string;
beforeEach(() => void (dir = mkdtempSync(join(tmpdir(), 'vmmkit-cli-qmp-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A line-reading client on a QMP socket. */
class SocketClient {
  readonly lines: Record<string, any>[] = [];
  closed = false;
  readonly socket: net.Socket;
  #buffer = '';

  constructor(path: string) {
    this.socket = net.connect(path);
    this.socket.on('data', (d) => {
      this.#buffer += d.toString();
      let nl: number;
      while ((nl = this.#buffer.indexOf('\n')) >= 0) {
        const line = this.#buffer.slice(0, nl).trim();
        this.#buffer = this.#buffer.slice(nl + 1);
        if (line) this.lines.push(JSON.parse(line));
      }
    });
    this.socket.on('close', () => (this.closed = true));
    this.socket.on('error', () => undefined);
  }

  async until(match: (m: Record<string, any>) => boolean): Promise<Record<string, any>> {
    for (let i = 0; i < 400; i++) {
      const m = this.lines.find(match);
      if (m) return m;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`no such line: ${JSON.stringify(this.lines)}`);
  }

  async execute(execute: string, args?: object): Promise<Record<string, any>> {
    const id = `${execute}-${this.lines.length}`;
    this.socket.write(JSON.stringify({ execute, ...(args && { arguments: args }), id }));
    return this.until((m) => m.id === id);
  }
}

it('serves QMP to several clients, drops a garbage sender, hot-plugs, and quits with status 0', async () => {
  const path = join(dir, 'vm.qmp');
  const t = testIo();
  const status = runCli(['run', '--sim', '-m', '32M', '--qmp', `unix:${path},server=on,wait=off`], t.io);
  await t.waitForLine(/^running until SIGINT or SIGTERM or QMP quit/);
  expect(t.out).toContain(`QMP listening on ${path}`);

  const a = new SocketClient(path);
  const b = new SocketClient(path);
  const bad = new SocketClient(path);
  for (const c of [a, b, bad]) expect((await c.until((m) => 'QMP' in m)).QMP.capabilities).toEqual([]);
  expect((await a.execute('query-status')).error.class).toBe('CommandNotFound');
  for (const c of [a, b]) expect((await c.execute('qmp_capabilities')).return).toEqual({});
  bad.socket.write('{"execute": "qmp_capabilities"}\n\u0000\u0001 garbage');
  await bad.until((m) => m.error?.desc?.includes('invalid character'));
  await new Promise((r) => setTimeout(r, 100));
  expect(bad.closed).toBe(true);

  expect((await b.execute('object-add', { 'qom-type': 'iommufd', id: 'iommufd0' })).return).toEqual({});
  expect((await b.execute('device_add', { driver: 'vfio-pci', id: 'nic0', host: '0000:00:05.0', iommufd: 'iommufd0' })).return).toEqual({});
  expect((await a.execute('query-pci')).return[0].devices.map((d: { qdev_id: string }) => d.qdev_id)).toEqual(['nic0']);
  expect((await a.execute('stop')).return).toEqual({});
  await b.until((m) => m.event === 'STOP');
  expect((await b.execute('quit')).return).toEqual({});
  expect(await status).toBe(EXIT_OK);
  expect(t.out.at(-1)).toBe('QMP quit: stopping');
  expect(existsSync(path)).toBe(false);
  await new Promise((r) => setTimeout(r, 50));
  expect(a.closed && b.closed).toBe(true);
}, 30_000);
