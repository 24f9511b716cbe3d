// An in-process QMP client for the tests: it talks to a QmpServer through a peer, as a socket
// would, and can pass descriptors with a message (what SCM_RIGHTS carries).

import { Vmm } from '@vmmkit/core';
import { legacyType1Plugin } from '@vmmkit/backend-legacy-type1';
import { iommufdPlugin } from '@vmmkit/backend-iommufd';
import { vfioPciPlugin } from '@vmmkit/device-vfio-pci';
import { migrationPlugin } from '@vmmkit/migration';
import type { SimHost } from '@vmmkit/sim';
import type { QmpServer, QmpSession } from '../src/index.js';

export type Message = Record<string, any>;

export class TestClient {
  readonly received: Message[] = [];
  readonly session: QmpSession;
  ended = false;
  #waiters: (() => void)[] = [];

  constructor(server: QmpServer) {
    this.session = server.connect({
      write: (text) => {
        for (const line of text.split('\r\n').filter(Boolean)) this.received.push(JSON.parse(line) as Message);
        for (const w of this.#waiters.splice(0)) w();
      },
      end: () => {
        this.ended = true;
        for (const w of this.#waiters.splice(0)) w();
      },
    });
  }

  /** A connected client past negotiation. */
  static async negotiated(server: QmpServer): Promise<TestClient> {
    const c = new TestClient(server);
    await c.execute('qmp_capabilities');
    return c;
  }

  get events(): Message[] {
    return this.received.filter((m) => 'event' in m);
  }

  send(raw: string | Buffer, fds: number[] = []): void {
    this.session.receive(typeof raw === 'string' ? Buffer.from(raw) : raw, fds);
  }

  /** Execute and wait for the answer (matched by id). */
  async execute(command: string, args?: Message, fds: number[] = []): Promise<Message> {
    const id = `t${this.received.length}-${Math.random()}`;
    this.send(JSON.stringify({ execute: command, ...(args && { arguments: args }), id }), fds);
    return this.until((m) => m.id === id);
  }

  /** The return value, failing the test on an error. */
  async ok(command: string, args?: Message, fds: number[] = []): Promise<any> {
    const r = await this.execute(command, args, fds);
    if (!('return' in r)) throw new Error(`${command} failed: ${JSON.stringify(r.error)}`);
    return r.return;
  }

  /** The error of a command expected to fail. */
  async err(command: string, args?: Message, fds: number[] = []): Promise<{ class: string; desc: string }> {
    const r = await this.execute(command, args, fds);
    if (!('error' in r)) throw new Error(`${command} succeeded: ${JSON.stringify(r.return)}`);
    return r.error;
  }

  /** The first message received (now or later) that matches. */
  async until(match: (m: Message) => boolean, timeoutMs = 10_000): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.received.find(match);
      if (found) return found;
      if (this.ended) throw new Error('the server ended the session');
      if (Date.now() > deadline) throw new Error(`no such message; got ${JSON.stringify(this.received.slice(-5))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  event(name: string, match: (data: Message) => boolean = () => true): Promise<Message> {
    return this.until((m) => m.event === name && match(m.data ?? {}));
  }
}

/** A VMM with every plugin and 8 MiB of RAM on `host`. */
export async function testVm(host: SimHost, options: { incoming?: boolean } = {}): Promise<Vmm> {
  return Vmm.create({
    host,
    plugins: [legacyType1Plugin(), iommufdPlugin(), vfioPciPlugin(), migrationPlugin()],
    memory: [{ gpa: 0n, size: 8n << 20n }],
    incoming: options.incoming,
    name: options.incoming ? 'destination' : 'source',
  });
}
