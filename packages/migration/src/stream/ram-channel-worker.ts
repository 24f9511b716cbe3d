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
import { MigrationRefusedError } from '../migration-errors.js';

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

let over = false;

/**
 * The worker's work is over — done, failed (`error`), or ended by its owner: report a failure,
 * close the connection (normally after an end, else with a reset), and let the thread end.
 */
function finish(error?: unknown): void {
  if (over) return;
  over = true;
  if (error !== undefined) post({ op: 'failed', error: sendError(error) });
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
    if (m.op === 'destroy') return finish();
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
    finish();
    reader.stop();
    // The reading loop ends on the destroyed transport; a pass it waits on ends with it.
    for (const r of releases.values()) r.reject(new MigrationRefusedError('the RAM channels were closed'));
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
  }).then(() => finish(), (e: unknown) => finish(e));
}

if (data.role === 'send') runSender();
else runReceiver();
