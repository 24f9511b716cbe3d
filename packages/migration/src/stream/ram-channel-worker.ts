// The worker thread of one RAM channel (started by ram-channel-threads.ts): it takes the
// channel's connection over, views guest RAM where the owning thread has it mapped, and sends or
// receives the channel's stream there, answering its owner through the message port.

import { parentPort, workerData } from 'node:worker_threads';
import { attachProcessMapping, GuestMemory, RamBlock } from '@vmmkit/core';
import { Deferred } from './deferred.js';
import type { ChannelWorkerData, Destroy, ReceiverRelease, SenderRequest, SharedRam, WorkerMessage } from './ram-channel-messages.js';
import { readRamChannel, type AppliedRamRecord } from './ram-channel-read.js';
import { forEachRunRecord, RamCursor } from './ram-pages.js';
import { SocketTransport } from './socket-transport.js';
import { MigrationStreamReader } from './stream-reader.js';
import { MigrationStreamWriter } from './stream-writer.js';
import { sendError } from './thread-errors.js';

const port = parentPort!;
const data = workerData as ChannelWorkerData;
const post = (m: WorkerMessage): void => port.postMessage(m);

/** Guest RAM at the owning thread's addresses; never unmapped here (the owner does that). */
function attach(ram: SharedRam): GuestMemory {
  const blocks = ram.blocks.map((b) => new RamBlock(b.name, b.gpa, b.size, attachProcessMapping(b.addr, Number(b.size)), ram.pageSize));
  return new GuestMemory(blocks, ram.pageSize);
}

const memory = attach(data.ram);
const transport = SocketTransport.fromFd(data.name, data.fd, data.received);
post({ op: 'ready' });

/** Report the failure once, drop the connection, and let the thread end. */
let over = false;
function finish(error?: unknown): void {
  if (over) return;
  over = true;
  if (error !== undefined) post({ op: 'failed', error: sendError(error) });
  if (error !== undefined) transport.destroy();
  port.close();
}

function destroy(): void {
  over = true;
  transport.destroy();
  port.close();
}

function runSender(): void {
  const writer = new MigrationStreamWriter(transport, { checksums: data.checksums });
  const cursors = memory.blocks.map((b) => new RamCursor(b));
  let chain = Promise.resolve();
  const handle = async (request: SenderRequest): Promise<void> => {
    const totals = { pages: 0, zeroPages: 0 };
    switch (request.op) {
      case 'open':
        await writer.write({ name: 'CHANNEL', channel: request.channel, channels: data.channels });
        break;
      case 'send': {
        const runs = request.runs;
        const send = (record: Parameters<typeof writer.write>[0]): Promise<void> => writer.write(record);
        for (let i = 0; i < runs.length; i += 2) await forEachRunRecord(cursors[request.block]!, request.block, runs[i]!, runs[i + 1]!, send, totals);
        break;
      }
      case 'sync':
        await writer.write({ name: 'SYNC', pass: request.pass });
        await writer.flush();
        break;
      case 'end':
        await writer.end();
        break;
    }
    post({ op: 'done', ...totals, bytes: writer.bytesWritten, ...(request.op === 'end' && { last: true as const }) });
    if (request.op === 'end') finish();
  };
  port.on('message', (m: SenderRequest | Destroy) => {
    if (m.op === 'destroy') return destroy();
    chain = chain.then(() => (over ? undefined : handle(m))).catch((e: unknown) => finish(e));
  });
}

function runReceiver(): void {
  const reader = new MigrationStreamReader(transport, { memory, idleTimeoutMs: data.idleTimeoutMs });
  const releases = new Map<number, Deferred<boolean>>();
  let applied: AppliedRamRecord[] = [];
  const report = (): void => {
    if (applied.length > 0) post({ op: 'records', records: applied });
    applied = [];
  };
  port.on('message', (m: ReceiverRelease | Destroy) => {
    if (m.op === 'release') return releases.get(m.pass)?.resolve(m.last);
    destroy();
    reader.stop();
    for (const r of releases.values()) r.reject(new Error('destroyed'));
  });
  readRamChannel(reader, memory, data.connection, data.channels, {
    claim: (channel) => post({ op: 'claim', channel }),
    applied: (r) => applied.push({ name: r.name, block: r.block, first: r.first, count: r.count, offset: r.offset, ...(r.corruptPages?.length && { corruptPages: r.corruptPages }) }),
    arrived: (pass) => {
      report();
      const release = new Deferred<boolean>();
      releases.set(pass, release);
      post({ op: 'arrived', pass, bytes: reader.bytesRead });
      return release.promise.finally(() => releases.delete(pass));
    },
    ended: (pass) => {
      report();
      post({ op: 'ended', pass, bytes: reader.bytesRead });
    },
  }).then(() => {
    // The stream ended: nothing more comes, and this side never writes.
    transport.destroy();
    finish();
  }, (e: unknown) => (over ? undefined : finish(e)));
}

if (data.role === 'send') runSender();
else runReceiver();
