// The migration stream's RAM path: 256 MiB of guest RAM (all pages dirty) sent with
// sendDirtyPages through the stream writer and reader into a destination GuestMemory, against the
// same bytes written raw over the same kind of socket to a receiver that only counts them. Both
// ends run in this process, so the ratio is the stream's whole CPU cost against the socket's.
// The stream can beat the raw socket: its reader has the kernel write page data straight into
// guest memory, in reads as large as the rest of the record, where the raw receiver gets Node's
// freshly allocated 64 KiB buffers.
// Then the cost of integrity: the stream with its checksums against the same stream without (the
// default), and zlib's CRC-32 over every page at both ends (the native alternative) against the
// stream without. Both ends' work lands on this one thread.

import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { randomFillSync } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirtyBitmap, GuestMemory, LinuxHost } from '@vmmkit/core';
import {
  applyRamRecord, connectMigration, listenMigration, MigrationStreamReader, MigrationStreamWriter, RamChannelSender, sendDirtyPages,
  ThreadedRamChannelSender, ThroughputMeter, type MigrationTransport, type RamChannelsOut,
} from '@vmmkit/migration';
import { compareAsync, median, type Benchmark, type Row } from './harness.js';
import { C_COMPILER, nativeProgram } from './native.js';
import type { PeerReply, PeerRequest } from './stream-peer.js';

const SIZE = 256 << 20;
const RAW_CHUNK = 1 << 20;
const PAGE = 4096;

type Kind = 'tcp' | 'unix';

/** A fresh listening address of `kind`. */
function addressOf(kind: Kind, dir: string, n: number): string {
  return kind === 'tcp' ? 'tcp:127.0.0.1:0' : `unix:${join(dir, `bench${n}.sock`)}`;
}

async function connectStream(address: string): Promise<[MigrationTransport, MigrationTransport]> {
  const listener = await listenMigration(address);
  const [destination, source] = await Promise.all([listener.accept(), connectMigration(listener.name)]);
  await listener.close();
  return [source, destination];
}

/** How a stream trial checks its data. */
interface Integrity {
  /** The stream's own checksums (page digests and a CRC per pass). */
  readonly checksums: boolean;
  /** zlib's CRC-32 of every page at both ends, beside the stream (instead of its checksums). */
  readonly crc32?: boolean;
}

/** One stream trial: every dirty page of `source` into `destination`; returns the stream bytes. */
async function streamOnce(address: string, source: GuestMemory, destination: GuestMemory, dirty: DirtyBitmap, integrity: Integrity): Promise<number> {
  const [s, d] = await connectStream(address);
  const receiving = (async () => {
    const reader = new MigrationStreamReader(d, { memory: destination });
    for (let r = await reader.next(); r; r = await reader.next()) {
      if (r.name !== 'RAM_PAGES' && r.name !== 'RAM_ZERO') continue;
      applyRamRecord(destination, r);
      if (integrity.crc32 && r.name === 'RAM_PAGES') for (let at = 0; at < r.payload.byteLength; at += PAGE) crc32(r.payload.subarray(at, at + PAGE));
    }
    return reader.bytesRead;
  })();
  const writer = new MigrationStreamWriter(s, { checksums: integrity.checksums });
  if (integrity.crc32) {
    const write = writer.write.bind(writer);
    writer.write = (record) => {
      if (record.name === 'RAM_PAGES') for (const p of [record.payload].flat()) for (let at = 0; at < p.byteLength; at += PAGE) crc32(p.subarray(at, at + PAGE));
      return write(record);
    };
  }
  await sendDirtyPages(writer, source, 0, dirty);
  await writer.end();
  const bytes = await receiving;
  d.destroy();
  return bytes;
}

/** A destination in a process of its own (bench/stream-peer.ts), reused across trials. */
class StreamPeer {
  readonly #child: ChildProcess = fork(new URL('./stream-peer.js', import.meta.url), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });

  /**
   * Ask for one stream at `address`; resolves with where to connect, the promise of its bytes, and
   * with channels the promise that the first pass arrived.
   */
  async receive(address: string, channels?: number, threads?: boolean): Promise<{ name: string; warm: Promise<void>; done: Promise<{ bytes: number; cpuMs: number }> }> {
    const replies: PeerReply[] = [];
    const waiters: ((r: PeerReply) => void)[] = [];
    const onMessage = (r: PeerReply): void => {
      const waiter = waiters.shift();
      if (waiter) waiter(r);
      else replies.push(r);
    };
    const next = (): Promise<PeerReply> => new Promise((resolve) => (replies.length ? resolve(replies.shift()!) : waiters.push(resolve)));
    this.#child.on('message', onMessage);
    this.#child.send({ address, size: SIZE, ...(channels && { channels, threads }) } satisfies PeerRequest);
    const first = await next();
    if (!('listening' in first)) throw new Error(`stream peer: ${JSON.stringify(first)}`);
    const warm = channels
      ? next().then((r) => {
        if (!('warm' in r)) throw new Error(`stream peer: ${JSON.stringify(r)}`);
      })
      : Promise.resolve();
    const done = warm.then(next).then((r) => {
      this.#child.off('message', onMessage);
      if (!('done' in r)) throw new Error(`stream peer: ${JSON.stringify(r)}`);
      return { bytes: r.done, cpuMs: r.cpuMs };
    });
    return { name: first.listening, warm, done };
  }

  stop(): void {
    this.#child.send('exit');
  }
}

/** CPU time (ms) of each end of one two-process trial. */
interface TrialCpu {
  source: number;
  destination: number;
}

/**
 * One trial with the destination in `peer`'s process: every dirty page of `source`; adds each
 * end's CPU time to `cpu` and returns the ms from connecting to the destination's end of stream.
 */
async function streamToPeer(peer: StreamPeer, address: string, source: GuestMemory, dirty: DirtyBitmap, checksums: boolean, cpu: TrialCpu[]): Promise<number> {
  const { name, done } = await peer.receive(address);
  const start = process.cpuUsage();
  const t0 = performance.now();
  const transport = await connectMigration(name);
  const writer = new MigrationStreamWriter(transport, { checksums });
  await sendDirtyPages(writer, source, 0, dirty);
  await writer.end();
  const { user, system } = process.cpuUsage(start);
  const received = await done;
  const ms = performance.now() - t0;
  transport.destroy();
  cpu.push({ source: (user + system) / 1000, destination: received.cpuMs });
  return ms;
}

/**
 * One trial of the C pair (bench/c/stream-pair.c): receiver and sender processes; returns the
 * receiver's ms from accepting to the end of the stream (the sender fills its RAM before it connects).
 */
async function cPairOnce(program: string, kind: Kind, dir: string, n: number): Promise<number> {
  const where = kind === 'tcp' ? 'tcp' : `unix:${join(dir, `c${n}.sock`)}`;
  const receiver = spawn(program, ['recv', where, String(SIZE)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: receiver.stdout! })[Symbol.asyncIterator]();
  const listening = (await lines.next()).value as string | undefined;
  if (!listening?.startsWith('listening ')) throw new Error(`C receiver: ${listening}`);
  const sender = spawn(program, ['send', listening.slice('listening '.length), String(SIZE)], { stdio: 'inherit' });
  const done = (await lines.next()).value as string | undefined;
  await new Promise((resolve) => (sender.exitCode !== null ? resolve(0) : sender.once('exit', resolve)));
  if (!done?.startsWith('done ')) throw new Error(`C receiver: ${done}`);
  return Number(done.split(' ')[2]);
}

/**
 * Every dirty page of `source` over `channels` RAM channels to `peer`, each end's channels on its
 * main thread or in worker threads. A small first pass starts the channels (and their threads,
 * which a migration starts once); returns the ms of the second, whole pass from its first page to
 * the destination's end of stream, and the ms the start took (connections, threads, first pass).
 */
async function channelsToPeer(peer: StreamPeer, address: string, source: GuestMemory, dirty: DirtyBitmap, channels: number, threads: boolean): Promise<{ ms: number; startMs: number }> {
  const { name, warm, done } = await peer.receive(address, channels, threads);
  const started = performance.now();
  const transports: MigrationTransport[] = [];
  for (let i = 0; i < channels; i++) transports.push(await connectMigration(name));
  const sender: RamChannelsOut = threads ? new ThreadedRamChannelSender(transports, { memory: source }) : new RamChannelSender(transports.map((t) => new MigrationStreamWriter(t)));
  await sender.open();
  const first = new DirtyBitmap(dirty.pages);
  first.setRange(0, 256 * channels);
  await sender.send(source, 0, first);
  await sender.sync(1);
  await warm;
  const t0 = performance.now();
  await sender.send(source, 0, dirty);
  await sender.sync(2);
  await sender.end();
  await done;
  const ms = performance.now() - t0;
  await sender.settled();
  for (const t of transports) t.destroy();
  return { ms, startMs: t0 - started };
}


/** One baseline trial: the block's bytes written raw, in 1 MiB views, to a receiver that counts. */
async function rawOnce(kind: Kind, address: string, source: GuestMemory): Promise<void> {
  const server = net.createServer({ highWaterMark: 4 << 20 });
  const where = kind === 'tcp' ? { host: '127.0.0.1', port: 0 } : { path: address.slice('unix:'.length) };
  await new Promise<void>((resolve) => server.listen(where, resolve));
  const bound = server.address();
  const received = new Promise<void>((resolve) => {
    server.once('connection', (socket) => {
      let n = 0;
      socket.on('data', (chunk: Buffer) => {
        n += chunk.byteLength;
        if (n >= SIZE) resolve();
      });
    });
  });
  const target = typeof bound === 'object' && bound ? { host: '127.0.0.1', port: bound.port } : where;
  // The same write buffer as the stream's sockets (net.Socket takes highWaterMark; the typings omit it).
  const options = { ...target, highWaterMark: 4 << 20 };
  const client = net.connect(options as net.NetConnectOpts);
  await new Promise<void>((resolve) => client.once('connect', resolve));
  const bytes = source.blocks[0]!.mapping.bytes;
  for (let at = 0; at < SIZE; at += RAW_CHUNK) {
    if (!client.write(bytes.subarray(at, at + RAW_CHUNK))) await new Promise<void>((resolve) => client.once('drain', resolve));
  }
  await received;
  client.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Fill the guest's one block with random bytes; returns a bitmap with every page dirty. */
function fillRandomAllDirty(guest: GuestMemory): DirtyBitmap {
  const block = guest.blocks[0]!;
  for (let at = 0; at < SIZE; at += 1 << 20) randomFillSync(block.mapping.bytes, at, 1 << 20);
  const dirty = new DirtyBitmap(block.pages);
  dirty.fill();
  return dirty;
}

export const migrationStreamBenchmark: Benchmark = {
  name: 'migration stream',
  async run(): Promise<Row[]> {
    const host = new LinuxHost();
    const dir = mkdtempSync(join(tmpdir(), 'vmmkit-bench-'));
    const random = GuestMemory.allocate(host, [{ gpa: 0n, size: BigInt(SIZE) }]);
    const zero = GuestMemory.allocate(host, [{ gpa: 0n, size: BigInt(SIZE) }]);
    const destination = GuestMemory.allocate(host, [{ gpa: 0n, size: BigInt(SIZE) }]);
    const rows: Row[] = [];
    try {
      const dirty = fillRandomAllDirty(random);
      let n = 0;
      const rate = (ms: number): string => ThroughputMeter.format((SIZE * 1000) / ms);
      const stream = (kind: Kind, source: GuestMemory, integrity: Integrity) => () => streamOnce(addressOf(kind, dir, n++), source, destination, dirty, integrity);
      for (const kind of ['tcp', 'unix'] as const) {
        const over = kind === 'tcp' ? 'TCP loopback' : 'Unix socket';
        for (const [label, source] of [['random pages', random], ['zero pages', zero]] as const) {
          let streamBytes = 0;
          const r = await compareAsync({
            trials: 9,
            baseline: () => rawOnce(kind, addressOf(kind, dir, n++), source),
            subject: async () => {
              streamBytes = await stream(kind, source, { checksums: false })();
            },
          });
          rows.push({
            benchmark: 'migration stream, 256 MiB guest RAM, all dirty',
            case: `${over}: ${label}`,
            ratio: r.ratio,
            baseline: `raw 256 MiB over ${kind === 'tcp' ? 'TCP' : 'Unix'}`,
            note: `stream ${rate(r.subjectMs)} of guest RAM (${streamBytes} stream bytes), raw ${rate(r.baselineMs)}`,
          });
        }
        const integrity = [
          ['checksums (PageDigest + pass CRC-32)', { checksums: true }],
          ['zlib.crc32 of every page at both ends', { checksums: false, crc32: true }],
        ] as const;
        for (const [what, subject] of integrity) {
          const r = await compareAsync({ trials: 9, baseline: async () => void (await stream(kind, random, { checksums: false })()), subject: async () => void (await stream(kind, random, subject)()) });
          rows.push({
            benchmark: 'migration stream integrity, 256 MiB random pages',
            case: `${over}: ${what}`,
            ratio: r.ratio,
            baseline: 'the stream without checksums',
            note: `${rate(r.subjectMs)} against ${rate(r.baselineMs)}: costs ${((1 - r.ratio) * 100).toFixed(1)}% of the throughput`,
          });
        }
      }
    } finally {
      random.free();
      zero.free();
      destination.free();
      rmSync(dir, { recursive: true, force: true });
    }
    return rows;
  },
};

export const twoProcessIntegrityBenchmark: Benchmark = {
  name: 'migration stream, two processes',
  async run(): Promise<Row[]> {
    const host = new LinuxHost();
    const dir = mkdtempSync(join(tmpdir(), 'vmmkit-bench-'));
    const random = GuestMemory.allocate(host, [{ gpa: 0n, size: BigInt(SIZE) }]);
    const rows: Row[] = [];
    try {
      const dirty = fillRandomAllDirty(random);
      let n = 0;
      const rate = (ms: number): string => ThroughputMeter.format((SIZE * 1000) / ms);
      // Each end in its own process (a core each, as a real migration has a host each): the cost
      // of the checksums to the stream's throughput, with each end paying its own.
      const peer = new StreamPeer();
      const program = nativeProgram('stream-pair');
      try {
        for (const kind of ['tcp', 'unix'] as const) {
          const over = kind === 'tcp' ? 'TCP loopback' : 'Unix socket';
          const pairBench = 'migration stream, 256 MiB random pages, two processes';
          const pairBaseline = `C sender and receiver, same framing (${C_COMPILER})`;
          if (program.path) {
            // Alternating trials; each side times only the stream (from connect or accept to its end).
            const ts: number[] = [];
            const c: number[] = [];
            const scratch: TrialCpu[] = [];
            await cPairOnce(program.path, kind, dir, n++);
            await streamToPeer(peer, addressOf(kind, dir, n++), random, dirty, false, scratch);
            for (let t = 0; t < 9; t++) {
              c.push(await cPairOnce(program.path, kind, dir, n++));
              ts.push(await streamToPeer(peer, addressOf(kind, dir, n++), random, dirty, false, scratch));
            }
            const [cMs, tsMs] = [median(c), median(ts)];
            rows.push({ benchmark: pairBench, case: `${over}: the stream, into guest RAM`, ratio: cMs / tsMs, baseline: pairBaseline, note: `${rate(tsMs)} against C ${rate(cMs)}` });
          } else {
            rows.push({ benchmark: pairBench, case: `${over}: the stream, into guest RAM`, ratio: NaN, baseline: pairBaseline, skipped: program.missing });
          }
          // N RAM channels against one stream, each end in its own process: the channels on each
          // end's main thread, or each in a worker thread of its own (guest RAM shared). This
          // machine has 2 cores for both ends: see the note of each row.
          for (const [channels, threads] of [[2, false], [1, true], [2, true], [4, true]] as const) {
            const one: number[] = [];
            const many: number[] = [];
            const starts: number[] = [];
            const scratch: TrialCpu[] = [];
            await channelsToPeer(peer, addressOf(kind, dir, n++), random, dirty, channels, threads);
            for (let t = 0; t < 7; t++) {
              one.push(await streamToPeer(peer, addressOf(kind, dir, n++), random, dirty, false, scratch));
              const trial = await channelsToPeer(peer, addressOf(kind, dir, n++), random, dirty, channels, threads);
              many.push(trial.ms);
              starts.push(trial.startMs);
            }
            const [oneMs, manyMs] = [median(one), median(many)];
            rows.push({
              benchmark: pairBench, case: `${over}: ${channels} RAM channel${channels > 1 ? 's' : ''}, ${threads ? 'a worker thread each' : 'on the main thread'}`,
              ratio: oneMs / manyMs, baseline: 'one stream',
              note: `${rate(manyMs)} against ${rate(oneMs)}; ${threads ? `${channels + 1} threads per end` : 'one thread per end'}, ${availableParallelism()} cores in all; `
                + `starting the channels (once per migration, not counted) took ${median(starts).toFixed(0)} ms`,
            });
          }
          const cpu: Record<'with' | 'without', TrialCpu[]> = { with: [], without: [] };
          const once = (checksums: boolean) => async () => void (await streamToPeer(peer, addressOf(kind, dir, n++), random, dirty, checksums, cpu[checksums ? 'with' : 'without']));
          const r = await compareAsync({ trials: 9, baseline: once(false), subject: once(true) });
          rows.push({
            benchmark: 'migration stream integrity, 256 MiB random pages, two processes',
            case: `${over}: checksums (PageDigest + pass CRC-32), throughput`,
            ratio: r.ratio,
            baseline: 'the stream without checksums',
            note: `${rate(r.subjectMs)} against ${rate(r.baselineMs)}: costs ${((1 - r.ratio) * 100).toFixed(1)}% of the throughput`,
          });
          // CPU time per end: what the checksums cost each host, whatever else the machine runs.
          for (const end of ['source', 'destination'] as const) {
            const without = median(cpu.without.map((c) => c[end]));
            const withSums = median(cpu.with.map((c) => c[end]));
            rows.push({
              benchmark: 'migration stream integrity, 256 MiB random pages, two processes',
              case: `${over}: checksums, CPU time of the ${end}`,
              ratio: without / withSums,
              baseline: 'the stream without checksums',
              note: `${withSums.toFixed(0)} ms against ${without.toFixed(0)} ms of CPU: ${withSums >= without ? '+' : ''}${((withSums / without - 1) * 100).toFixed(1)}%`,
            });
          }
        }
      } finally {
        peer.stop();
      }
    } finally {
      random.free();
      rmSync(dir, { recursive: true, force: true });
    }
    return rows;
  },
};
