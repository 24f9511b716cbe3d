// A whole migration whose RAM channels run in worker threads: two VMs on LinuxHost (guest RAM
// mmap'd in this process, so shared with the workers by address) over Unix sockets. The guest
// arrives whole with checksums on while it is written during precopy; a cancel on either side
// fails both with the source running on, every worker exited and every fd closed.

import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LinuxHost, Vmm } from '@vmmkit/core';
import {
  connectMigration, listenMigration, MigrationFailedError, migrateIncoming, migrateOutgoing, migrationPlugin, ramChannelThreadsPossible,
  type MigrationTransport,
} from '../src/index.js';

const host = new LinuxHost();
const MiB = 1n << 20n;
const openFds = (): number => readdirSync('/proc/self/fd').length;
const threads = (): number => readdirSync('/proc/self/task').length;

async function vm(incoming = false): Promise<Vmm> {
  return Vmm.create({ host, plugins: [migrationPlugin()], memory: [{ gpa: 0n, size: 16n * MiB, name: 'low' }, { gpa: 1n << 32n, size: 8n * MiB, name: 'high' }], incoming });
}

/** A guest that writes `count` pages from `seed` on (a vCPU's writes, logged as dirty). */
function scribble(vmm: Vmm, seed: number, count: number): void {
  const page = new Uint8Array(4096);
  for (let i = 0; i < count; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    page.fill(seed & 0xff || 1);
    const low = seed % 2 === 0;
    const n = (seed >>> 8) % (low ? 4096 : 2048);
    vmm.memory.write((low ? 0n : 1n << 32n) + BigInt(n) * 4096n, page);
  }
}

function same(a: Vmm, b: Vmm): boolean {
  return a.memory.blocks.every((block, i) => Buffer.compare(block.mapping.bytes, b.memory.blocks[i]!.mapping.bytes) === 0);
}

/** Connections for a migration with `channels` RAM channels over a Unix socket. */
async function connections(channels: number) {
  const listener = await listenMigration(`unix:/tmp/vmmkit-mct-${process.pid}-${Math.random().toString(36).slice(2)}.sock`, { connections: channels + 1 });
  const main = await connectMigration(listener.name);
  const into = await listener.accept();
  const sources: MigrationTransport[] = [];
  for (let i = 0; i < channels; i++) sources.push(await connectMigration(listener.name));
  return { listener, main, into, sources };
}

describe('a migration with RAM channels in worker threads', { timeout: 30_000 }, () => {
  it.for([1, 3])('%i channel(s): moves a busy guest whole, checksummed, and leaves nothing', async (channels) => {
    const fds = openFds();
    const source = await vm();
    const destination = await vm(true);
    scribble(source, 1, 3000);
    let pass = 0;
    const before = threads();
    let during = 0;
    source.events.on('migration:iteration', () => {
      during = Math.max(during, threads());
      scribble(source, 100 + ++pass, 200);
    });
    const c = await connections(channels);
    expect(ramChannelThreadsPossible(source.memory, c.sources)).toBe(true);
    const [sent, received] = await Promise.all([
      migrateOutgoing(source, { main: c.main, channels: c.sources }, { channels, integrity: true, maxIterations: 3, downtimeLimitMs: 0 }),
      migrateIncoming(destination, c.into, { acceptChannel: () => c.listener.accept() }),
    ]);
    await c.listener.close();
    expect(same(source, destination)).toBe(true);
    expect(received.pages + received.zeroPages).toBe(sent.pagesSent + sent.zeroPages);
    expect(destination.running).toBe(true);
    // Each channel ran in a thread of its own on either side.
    expect(during).toBeGreaterThanOrEqual(before + 2 * channels);
    await source.close();
    await destination.close();
    // The channels' workers end once their streams have: give them the moment they take.
    for (let i = 0; i < 100 && openFds() !== fds; i++) await new Promise((r) => setTimeout(r, 20));
    expect(openFds()).toBe(fds);
  });

  it.for(['source', 'destination'] as const)('cancelled on the %s during precopy: both fail, the source runs on, nothing is left', async (side) => {
    const fds = openFds();
    const source = await vm();
    const destination = await vm(true);
    scribble(source, 7, 3000);
    const cancel = new AbortController();
    source.events.on('migration:iteration', () => {
      scribble(source, 9, 500);
      cancel.abort();
    });
    const c = await connections(2);
    const outcome = await Promise.allSettled([
      migrateOutgoing(source, { main: c.main, channels: c.sources }, { channels: 2, maxIterations: 30, downtimeLimitMs: 0, ...(side === 'source' && { signal: cancel.signal }) }),
      migrateIncoming(destination, c.into, { acceptChannel: () => c.listener.accept(), ...(side === 'destination' && { signal: cancel.signal }) }),
    ]);
    await c.listener.close();
    for (const o of outcome) expect((o as PromiseRejectedResult).reason).toBeInstanceOf(MigrationFailedError);
    expect(source.running).toBe(true);
    expect(source.memory.logging).toBe(false);
    expect(destination.running).toBe(false);
    await source.close();
    await destination.close();
    expect(openFds()).toBe(fds);
  });
});
