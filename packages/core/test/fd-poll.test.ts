// Fd readiness from the event loop, both ways LinuxHost has of asking libuv: its own poll handles
// through one koffi callback (the main thread) and koffi.node.poll (workers). Each reports
// readability and writability as asked, changes its events when told, stays silent once
// closed, and names the call when the fd cannot be watched.

import koffi from 'koffi';
import { describe, expect, it } from 'vitest';
import { HostError } from '../src/host/host-error.js';
import { koffiPoll, loadLibc, type PollEvents } from '../src/host/linux-libc.js';
import { libuvPoll } from '../src/host/uv-poll.js';

const libc = loadLibc();
const libuv = libuvPoll(koffi, libc.address);
const turn = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

function pair(): { a: number; b: number; close(): void } {
  const sv = new Int32Array(2);
  // AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC
  expect(libc.sockets.socketpair(1, 1 | 0o4000 | 0o2000000, 0, sv)).toBe(0);
  return { a: sv[0]!, b: sv[1]!, close: () => { libc.close(sv[0]!); libc.close(sv[1]!); } };
}

it('the main thread uses libuv\'s own poll handles', () => {
  expect(libuv).toBeDefined();
});

describe.each([['libuv poll handle', libuv!], ['koffi.node.poll', koffiPoll]])('%s', (_name, poll) => {
  it('reports readability, then writability when asked instead, and nothing once closed', async () => {
    const { a, b, close } = pair();
    const seen: PollEvents[] = [];
    const p = poll(b, { readable: true, writable: false }, (ready) => {
      seen.push({ readable: ready.readable, writable: ready.writable });
      const buf = new Uint8Array(new ArrayBuffer(64));
      libc.read(b, buf, 64);
    });
    await turn();
    expect(seen).toEqual([]);
    libc.write(a, new Uint8Array(new ArrayBuffer(8)), 8);
    await turn();
    expect(seen).toEqual([{ readable: true, writable: false }]);
    // An empty send buffer is writable at once; stop asking so that it is reported once.
    seen.length = 0;
    p.update({ readable: false, writable: true });
    await turn();
    expect(seen.length).toBeGreaterThan(0);
    expect(seen[0]).toEqual({ readable: false, writable: true });
    p.update({ readable: false, writable: false });
    seen.length = 0;
    libc.write(a, new Uint8Array(new ArrayBuffer(8)), 8);
    await turn();
    expect(seen).toEqual([]);
    p.update({ readable: true, writable: false });
    await turn();
    expect(seen).toEqual([{ readable: true, writable: false }]);
    p.close();
    p.close();
    seen.length = 0;
    libc.write(a, new Uint8Array(new ArrayBuffer(8)), 8);
    await turn();
    expect(seen).toEqual([]);
    close();
  });

  it('keeps every handle apart: each fd\'s callback hears only its own', async () => {
    const pairs = [pair(), pair(), pair()];
    const heard: number[] = [];
    const polls = pairs.map(({ b }, i) => poll(b, { readable: true, writable: false }, () => {
      heard.push(i);
      libc.read(b, new Uint8Array(new ArrayBuffer(64)), 64);
    }));
    libc.write(pairs[1]!.a, new Uint8Array(new ArrayBuffer(1)), 1);
    await turn();
    libc.write(pairs[2]!.a, new Uint8Array(new ArrayBuffer(1)), 1);
    await turn();
    expect(heard).toEqual([1, 2]);
    for (const p of polls) p.close();
    for (const p of pairs) p.close();
  });
});

it('names the call and the errno when the fd cannot be watched', () => {
  const { a, close } = pair();
  close();
  let caught: unknown;
  try {
    libuv!(a, { readable: true, writable: false }, () => {});
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(HostError);
  expect((caught as HostError).message).toMatch(/uv_poll_init/);
  expect((caught as HostError).errno).toBe('EBADF');
});
