// UnixStream, the byte stream with fds under the vfio-user transport and the QMP socket: bytes and
// fds arrive in order, output the peer cannot take yet is queued and counted, end() hangs up only
// after the queue is written, close() drops it.

import { closeSync, openSync, readlinkSync } from 'node:fs';
import { afterEach, expect, it } from 'vitest';
import { UnixSocket, UnixStream, type UnixStreamFailure } from '../src/vfio-user/index.js';

interface Side {
  readonly stream: UnixStream;
  bytes: number;
  readonly fds: number[];
  ended?: { failure?: UnixStreamFailure };
}

const sides: Side[] = [];

function side(socket: UnixSocket): Side {
  const s: Side = { stream: new UnixStream(socket), bytes: 0, fds: [] };
  s.stream.start({
    data: (bytes, fds) => {
      s.bytes += bytes.byteLength;
      s.fds.push(...fds);
    },
    closed: (failure) => (s.ended = { failure }),
  });
  sides.push(s);
  return s;
}

afterEach(() => {
  for (const s of sides.splice(0)) {
    s.stream.close();
    for (const fd of s.fds) closeSync(fd);
  }
});

const until = async (done: () => boolean): Promise<void> => {
  for (let i = 0; i < 500 && !done(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(done()).toBe(true);
};

it('carries bytes and fds; the receiver gets its own fd for the same file', async () => {
  const [a, b] = UnixSocket.pair();
  const tx = side(a);
  const rx = side(b);
  const file = openSync('/dev/null', 'r');
  tx.stream.send(Buffer.from('hello'), [file]);
  closeSync(file);
  await until(() => rx.bytes === 5);
  expect(rx.fds).toHaveLength(1);
  expect(readlinkSync(`/proc/self/fd/${rx.fds[0]}`)).toBe('/dev/null');
});

it('queues what the peer does not read, and end() hangs up only once it is all written', async () => {
  const [a, b] = UnixSocket.pair();
  const tx = side(a);
  // The reader is not started yet: the kernel buffer fills and the rest waits in the queue.
  const big = new Uint8Array(4 << 20);
  tx.stream.send(big);
  expect(tx.stream.queuedBytes).toBeGreaterThan(0);
  expect(tx.stream.queuedBytes).toBeLessThan(big.byteLength);
  tx.stream.end();
  expect(tx.stream.open).toBe(true);
  // Nothing more is accepted once ending.
  tx.stream.send(new Uint8Array(10));
  const rx = side(b);
  await until(() => rx.ended !== undefined);
  expect(rx.bytes).toBe(big.byteLength);
  expect(rx.ended).toEqual({ failure: undefined });
  expect(tx.ended).toEqual({ failure: undefined });
  expect(tx.stream.queuedBytes).toBe(0);
});

it('close() drops the queue; the peer sees the end', async () => {
  const [a, b] = UnixSocket.pair();
  const tx = side(a);
  tx.stream.send(new Uint8Array(4 << 20));
  tx.stream.close();
  expect(tx.stream.queuedBytes).toBe(0);
  expect(tx.ended).toEqual({ failure: undefined });
  const rx = side(b);
  await until(() => rx.ended !== undefined);
  expect(rx.bytes).toBeLessThan(4 << 20);
});
