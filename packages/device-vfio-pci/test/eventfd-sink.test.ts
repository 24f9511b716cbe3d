// The eventfd reader of a vector: paused while another consumer (a KVM irqfd) takes the signals,
// it reads nothing; listening again, it hears at once what was counted meanwhile. On the real
// kernel (LinuxHost's watch) and on SimHost's.

import { describe, expect, it } from 'vitest';
import { LinuxHost, type HostKernel } from '@vmmkit/core';
import { SimHost } from '@vmmkit/sim';
import { EventfdSink } from '../src/eventfd-sink.js';
import { MACHINE } from './helpers.js';

/** Time for a reader to hear a signal, if it listens (only where the test expects silence). */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 30));

/** Resolves once `test` holds, checking on every turn of the event loop for up to 5 s. */
async function until(test: () => boolean): Promise<void> {
  for (const end = Date.now() + 5000; !test() && Date.now() < end;) await new Promise((r) => setTimeout(r, 1));
}

function signal(host: HostKernel, fd: number, n: number): void {
  const buf = new Uint8Array(8);
  new DataView(buf.buffer).setBigUint64(0, BigInt(n), true);
  host.write(fd, buf);
}

describe.for([
  ['LinuxHost', () => new LinuxHost()],
  ['SimHost', () => new SimHost(MACHINE)],
] as const)('EventfdSink on %s', ([, makeHost]) => {
  it.skipIf(process.platform !== 'linux')('reads nothing while paused and hears what was counted once it listens again', async () => {
    const host = makeHost();
    const heard: bigint[] = [];
    const errors: unknown[] = [];
    const sink = new EventfdSink(host, 'dev', (n) => heard.push(n), (e) => errors.push(e));
    try {
      expect(sink.listening).toBe(true);
      signal(host, sink.fd, 1);
      await until(() => heard.length > 0);
      expect(heard).toEqual([1n]);
      sink.pause();
      sink.pause(); // idempotent
      expect(sink.listening).toBe(false);
      signal(host, sink.fd, 2);
      signal(host, sink.fd, 3);
      await settle();
      expect(heard).toEqual([1n]);
      sink.listen();
      sink.listen(); // idempotent: one reader
      await until(() => heard.length > 1);
      await settle();
      expect(heard).toEqual([1n, 5n]);
      expect(errors).toEqual([]);
    } finally {
      sink.close();
    }
  });
});
