// The two vfio-user transports: a real AF_UNIX socket (SCM_RIGHTS through koffi, poll-driven,
// partial writes) and the in-process pair, with fds passed, refused and closed.

import { readdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LinuxHost, type VmmError } from '@vmmkit/core';
import {
  InProcessTransport, SocketListener, SocketTransport, VfioUserProtocolError, VfioUserTransportError, encodeMessage,
  type VfioUserMessage, type VfioUserTransport,
} from '@vmmkit/core/vfio-user';

const openFds = (): number => readdirSync('/proc/self/fd').length;

/** Collect what a transport delivers. */
function collect(t: VfioUserTransport): { messages: VfioUserMessage[]; closed: Promise<VmmError | undefined>; next: (n: number) => Promise<void> } {
  const messages: VfioUserMessage[] = [];
  let wake: (() => void) | undefined;
  const closed = new Promise<VmmError | undefined>((resolve) => {
    t.start({
      message: (m) => {
        messages.push(m);
        wake?.();
      },
      closed: (e) => {
        resolve(e);
        wake?.();
      },
    });
  });
  const next = async (n: number): Promise<void> => {
    while (messages.length < n) await new Promise<void>((r) => (wake = r));
  };
  return { messages, closed, next };
}

describe('socket transport', () => {
  let dir: string;
  const host = new LinuxHost();
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  /** A client connected to a listener in a new folder, and the server side it was accepted as. */
  async function connectedPair(): Promise<{ server: SocketTransport; client: SocketTransport }> {
    dir = mkdtempSync(join(tmpdir(), 'vu-'));
    const path = join(dir, 's');
    let server!: SocketTransport;
    const accepted = new Promise<void>((resolve) => {
      const listener = SocketListener.listen(path, (t) => {
        server = t;
        listener.close();
        resolve();
      });
    });
    const client = SocketTransport.connect(path);
    await accepted;
    return { server, client };
  }

  it('carries messages and fds both ways, large ones in pieces, and ends on peer close', async () => {
    const before = openFds();
    const { server, client } = await connectedPair();
    const s = collect(server);
    const c = collect(client);
    const efd = host.eventfd(0, 0);
    const big = Buffer.from(new Uint8Array(900_000).map((_, i) => i & 0xff));
    client.send(encodeMessage({ msgId: 1, command: 2, flags: 0, error: 0 }, new Uint8Array(32)), [efd]);
    client.send(encodeMessage({ msgId: 2, command: 10, flags: 0, error: 0 }, big));
    server.send(encodeMessage({ msgId: 1, command: 2, flags: 1, error: 0 }));
    await s.next(2);
    await c.next(1);
    expect(s.messages[0]!.fds).toHaveLength(1);
    expect(s.messages[0]!.fds[0]).not.toBe(efd);
    // The received fd is the same eventfd: a write through it is read through ours.
    host.write(s.messages[0]!.fds[0]!, new Uint8Array(new BigUint64Array([5n]).buffer));
    const got = new Uint8Array(8);
    host.read(efd, got);
    expect(new BigUint64Array(got.buffer)[0]).toBe(5n);
    expect(Buffer.from(s.messages[1]!.payload).equals(big)).toBe(true);
    expect(c.messages[0]!.header.flags).toBe(1);
    host.close(s.messages[0]!.fds[0]!);
    host.close(efd);
    client.close();
    expect(await s.closed).toBeUndefined();
    expect(await c.closed).toBeUndefined();
    expect(() => client.send(new Uint8Array(16))).toThrow(VfioUserTransportError);
    expect(openFds()).toBe(before);
  });

  it('ends the connection on a hostile header and closes the fds that came with it', async () => {
    const before = openFds();
    const { server, client } = await connectedPair();
    const s = collect(server);
    const c = collect(client);
    const efd = host.eventfd(0, 0);
    // A header claiming 2 GiB, with an fd attached.
    const evil = encodeMessage({ msgId: 1, command: 2, flags: 0, error: 0 });
    new DataView(evil.buffer).setUint32(4, 0x8000_0000, true);
    client.send(evil, [efd]);
    const error = await s.closed;
    expect(error).toBeInstanceOf(VfioUserProtocolError);
    expect(error!.message).toMatch(/exceeds the limit/);
    expect(await c.closed).toBeUndefined();
    host.close(efd);
    expect(openFds()).toBe(before);
  });

  it('names the socket path when connecting fails', () => {
    dir = mkdtempSync(join(tmpdir(), 'vu-'));
    const path = join(dir, 'nobody');
    let caught: unknown;
    try {
      SocketTransport.connect(path);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(VfioUserTransportError);
    expect(String(caught)).toContain(path);
    expect(String((caught as Error).cause)).toMatch(/connect\(.*ENOENT/);
  });
});

describe('in-process transport', () => {
  const host = new LinuxHost();

  it('closes the fds of a message that completes after its receiver closed the connection, as the socket transport does', async () => {
    const before = openFds();
    const [a, b] = InProcessTransport.pair(host);
    const delivered: VfioUserMessage[] = [];
    const ended = new Promise<void>((resolve) => {
      b.start({
        message: (m) => {
          delivered.push(m);
          b.close(); // the receiver gives up at the first message
        },
        closed: () => resolve(),
      });
    });
    a.start({ message: () => {}, closed: () => {} });
    const efd = host.eventfd(0, 0);
    // Two messages in one chunk; the fd belongs to the second (the one holding the chunk's last byte).
    const first = encodeMessage({ msgId: 1, command: 2, flags: 0, error: 0 });
    const second = encodeMessage({ msgId: 2, command: 2, flags: 0, error: 0 });
    const chunk = new Uint8Array(first.byteLength + second.byteLength);
    chunk.set(first);
    chunk.set(second, first.byteLength);
    a.send(chunk, [efd]);
    host.close(efd);
    await ended;
    expect(delivered.map((m) => m.header.msgId)).toEqual([1]);
    a.close();
    expect(openFds()).toBe(before);
  });
});
