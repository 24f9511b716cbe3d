// The destination of a two-process stream trial (forked by migration-stream.bench.ts): it listens
// where the parent says, reads one stream into its own guest RAM, and answers with the stream
// bytes it read. A process of its own, so that each end of the stream has its own core.

import { GuestMemory, LinuxHost } from '@vmmkit/core';
import { applyRamRecord, listenMigration, MigrationStreamReader, RamChannelReceiver, type MigrationTransport } from '@vmmkit/migration';

/**
 * Parent to peer: receive one stream at `address` into `size` bytes of RAM; with `channels`, one
 * pass of RAM over that many RAM channels (no main stream) instead, on this thread or in worker
 * threads. The CPU time reported is the whole process's (its workers' too).
 */
export interface PeerRequest {
  readonly address: string;
  readonly size: number;
  readonly channels?: number;
  /** With `channels`: read each channel in a worker thread (sharing the RAM) instead of on the main thread. */
  readonly threads?: boolean;
}

/**
 * Peer to parent: `listening` at `name`, then `done` with the stream bytes and the CPU time (ms,
 * user + system) the peer spent from accepting to the end of the stream (or `error`). With
 * channels, `warm` first: the first (small) pass arrived, every channel runs; `done` then
 * counts from there.
 */
export type PeerReply = { readonly listening: string } | { readonly warm: true } | { readonly done: number; readonly cpuMs: number } | { readonly error: string };

let memory: GuestMemory | undefined;

async function receive({ address, size, channels, threads }: PeerRequest): Promise<void> {
  memory ??= GuestMemory.allocate(new LinuxHost(), [{ gpa: 0n, size: BigInt(size) }]);
  const listener = await listenMigration(address, { connections: channels ?? 1 });
  process.send!({ listening: listener.name } satisfies PeerReply);
  if (channels) return receiveChannels(listener, channels, memory, threads === true);
  const transport = await listener.accept();
  const cpu = process.cpuUsage();
  await listener.close();
  const reader = new MigrationStreamReader(transport, { memory });
  for (let r = await reader.next(); r; r = await reader.next()) if (r.name === 'RAM_PAGES' || r.name === 'RAM_ZERO') applyRamRecord(memory, r);
  transport.destroy();
  const { user, system } = process.cpuUsage(cpu);
  process.send!({ done: reader.bytesRead, cpuMs: (user + system) / 1000 } satisfies PeerReply);
}

/**
 * Two passes over `channels` RAM channels: a small one that starts them (worker threads take a
 * while to start, once per migration), then the measured one.
 */
async function receiveChannels(listener: Awaited<ReturnType<typeof listenMigration>>, channels: number, ram: GuestMemory, threads: boolean): Promise<void> {
  const transports: MigrationTransport[] = [];
  for (let i = 0; i < channels; i++) transports.push(await listener.accept());
  await listener.close();
  const receiver = new RamChannelReceiver(transports, { memory: ram, threads });
  await receiver.pass(1);
  process.send!({ warm: true } satisfies PeerReply);
  const cpu = process.cpuUsage();
  await receiver.pass(2, true);
  await receiver.end();
  const { user, system } = process.cpuUsage(cpu);
  await receiver.settled();
  for (const t of transports) t.destroy();
  process.send!({ done: receiver.bytesRead, cpuMs: (user + system) / 1000 } satisfies PeerReply);
}

process.on('message', (request: PeerRequest | 'exit') => {
  if (request === 'exit') {
    memory?.free();
    process.exit(0);
  }
  receive(request).catch((e: unknown) => process.send!({ error: String(e) } satisfies PeerReply));
});
