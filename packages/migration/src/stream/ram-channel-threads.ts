// RAM channels in worker threads (QEMU's multifd send/recv threads): each channel's connection is
// handed to a worker of its own, which frames and sends, or reads, checks and applies, its pages
// straight from or into guest RAM. The guest RAM is shared, not copied: LinuxHost mmap'd it, so
// it lies at one address for every thread of the process, and a worker views it there
// (`attachProcessMapping`). The thread that owns the migration keeps the order: it deals each
// pass's dirty runs to the workers and holds every channel at its SYNC, as on one thread.

import { Worker } from 'node:worker_threads';
import { ArgumentError, closeProcessFd, isProcessMapping, type DirtyBitmap, type GuestMemory } from '@vmmkit/core';
import type { BandwidthPacer } from './bandwidth-pacer.js';
import { Deferred } from './deferred.js';
import type { MigrationTransport } from './migration-transport.js';
import type { ChannelWorkerData, SenderRequest, SharedRam, WorkerMessage } from './ram-channel-messages.js';
import type { RamChannelHooks } from './ram-channel-read.js';
import type { RamChannelLink, RamChannelsOut } from './ram-channels.js';
import { nextClearBit, type RamSendResult } from './ram-pages.js';
import { MAX_DATA_PAGES } from './records.js';
import { SocketTransport } from './socket-transport.js';
import { reviveError } from './thread-errors.js';
import { MigrationChannelThreadError } from '../migration-errors.js';

/**
 * Most pages one request to a worker carries: the grain at which a bandwidth limit (paced here,
 * on the dealing thread) holds the workers back. 4 MiB: a message per 4 MiB costs nothing next to
 * copying them, and a limit set during a pass takes hold within one such slice.
 */
const PACED_REQUEST_PAGES = 1024;

/** How long a worker told to drop its connection has to exit before it is terminated. */
const EXIT_GRACE_MS = 1000;

/**
 * Whether RAM channels over `transports` can run in worker threads: every RAM block is memory of
 * this process at its address (LinuxHost's mmap; a simulated host's is not), and every transport
 * is a socket whose fd a worker can take over. A bandwidth limit does not stand in the way: the
 * pacer stays on this thread, which deals the pages to the workers at its pace.
 */
export function ramChannelThreadsPossible(memory: GuestMemory, transports: readonly MigrationTransport[]): boolean {
  return memory.blocks.length > 0 && memory.blocks.every((b) => isProcessMapping(b.mapping)) && transports.every((t) => t instanceof SocketTransport);
}

/** Guest RAM as workers reach it. */
function sharedRam(memory: GuestMemory): SharedRam {
  return { pageSize: memory.pageSize, blocks: memory.blocks.map((b) => ({ name: b.name, gpa: b.gpa, size: b.size, addr: b.mapping.addr })) };
}

/** The worker's module: the build's JavaScript (tests run the TypeScript sources; `npm test` builds first). */
function workerUrl(): URL {
  const here = new URL(import.meta.url);
  return here.pathname.endsWith('.ts') ? new URL('../../dist/stream/ram-channel-worker.js', here) : new URL('./ram-channel-worker.js', here);
}

/**
 * One worker running one channel connection. The fd stays this thread's until the worker says
 * `ready` (it made its socket of it); a worker that ends before that leaves it here to close.
 */
class ChannelThread {
  readonly #worker: Worker;
  readonly #exited = new Deferred();
  #fd: number | undefined;
  #failure: Error | undefined;
  #closing = false;
  #graceTimer: ReturnType<typeof setTimeout> | undefined;
  #onMessage: (m: WorkerMessage) => void = () => undefined;
  #onFailure: (e: Error) => void = () => undefined;

  constructor(readonly connection: number, readonly name: string, data: Omit<ChannelWorkerData, 'fd' | 'received' | 'name' | 'connection'>, transport: SocketTransport, module: URL) {
    const { fd, received } = transport.detach();
    this.#fd = fd;
    try {
      // execArgv: [] — not the owner's flags: a test runner's resolve conditions would point the
      // worker at TypeScript sources it cannot load.
      this.#worker = new Worker(module, {
        execArgv: [], workerData: { ...data, fd, received, name, connection } satisfies ChannelWorkerData, name: `ram-channel-${connection}` });
    } catch (e) {
      this.#closeFd();
      throw new MigrationChannelThreadError(connection, name, 'could not start', { cause: e });
    }
    const worker = this.#worker;
    worker.on('message', (m: WorkerMessage) => {
      // The worker's last word: its exit follows, possibly in this same tick (Node delivers a
      // worker's last messages and then its exit at once).
      if (m.op === 'ended' || (m.op === 'done' && m.last)) this.#closing = true;
      if (m.op === 'ready') this.#fd = undefined;
      else if (m.op === 'failed') this.#fail(reviveError(m.error));
      else this.#onMessage(m);
    });
    worker.on('error', (e) => this.#fail(new MigrationChannelThreadError(connection, name, `failed: ${e.message}`, { cause: e })));
    worker.on('exit', (code) => {
      clearTimeout(this.#graceTimer);
      this.#closeFd();
      if (!this.#closing) this.#fail(new MigrationChannelThreadError(connection, name, `exited with code ${code}`));
      this.#exited.resolve();
    });
  }

  /** Where the worker's messages (other than ready and failed) and its first failure go. */
  listen(onMessage: (m: WorkerMessage) => void, onFailure: (e: Error) => void): void {
    this.#onMessage = onMessage;
    this.#onFailure = onFailure;
    if (this.#failure) onFailure(this.#failure);
  }

  get failure(): Error | undefined {
    return this.#failure;
  }

  post(message: unknown, transfer?: ArrayBuffer[]): void {
    if (!this.#closing) this.#worker.postMessage(message, transfer);
  }

  /** Tell the worker to drop its connection and exit; terminate it if it has not within a grace period. */
  destroy(): void {
    if (this.#closing) return;
    this.#worker.postMessage({ op: 'destroy' });
    this.#closing = true;
    this.#graceTimer = setTimeout(() => void this.#worker.terminate(), EXIT_GRACE_MS);
  }

  /** Resolves once the worker has exited (its connection is closed then). */
  settled(): Promise<void> {
    return this.#exited.promise;
  }

  #fail(e: Error): void {
    if (this.#failure || this.#closing) return;
    this.#failure = e;
    this.#onFailure(e);
    this.destroy();
  }

  #closeFd(): void {
    const fd = this.#fd;
    this.#fd = undefined;
    if (fd === undefined) return;
    try {
      closeProcessFd(fd);
    } catch {
      // Nothing else can be done with an fd that will not close.
    }
  }
}

/** What RAM channels in threads are given. */
export interface ThreadOptions {
  /** Guest RAM, shared with the workers. */
  readonly memory: GuestMemory;
  /**
   * The workers' module. Default: this package's (`ram-channel-worker.js`). Tests give one that
   * fails, to see a failing worker handled.
   */
  readonly threadModule?: URL;
}

/** Start one worker per connection; a failure to start one destroys every transport and worker. */
function startThreads(
  transports: readonly MigrationTransport[], data: Omit<ChannelWorkerData, 'fd' | 'received' | 'name' | 'connection'>, module = workerUrl(),
): ChannelThread[] {
  const threads: ChannelThread[] = [];
  try {
    transports.forEach((t, i) => threads.push(new ChannelThread(i, t.name, data, t as SocketTransport, module)));
  } catch (e) {
    for (const t of threads) t.destroy();
    for (const t of transports) t.destroy();
    throw e;
  }
  return threads;
}

/**
 * The destination's channel connections as {@link RamChannelLink}s read in worker threads.
 * @throws MigrationTransportError, HostError or MigrationChannelThreadError when a connection
 *   cannot be handed over (every transport and worker is dropped then).
 */
export function threadReceiveLinks(transports: readonly MigrationTransport[], options: ThreadOptions & { readonly idleTimeoutMs?: number }): RamChannelLink[] {
  const ram = sharedRam(options.memory);
  const channels = transports.length;
  const idle = options.idleTimeoutMs;
  return startThreads(transports, { role: 'receive', ram, channels, checksums: false, ...(idle !== undefined && { idleTimeoutMs: idle }) }, options.threadModule)
    .map((thread) => new ThreadReceiveLink(thread));
}

/** A channel connection read by a worker: its reports become the receiver's hooks. */
class ThreadReceiveLink implements RamChannelLink {
  #bytes = 0;

  constructor(private readonly thread: ChannelThread) {}

  get bytesRead(): number {
    return this.#bytes;
  }

  run(hooks: RamChannelHooks): Promise<void> {
    const done = new Deferred();
    const thread = this.thread;
    thread.listen((m) => {
      try {
        switch (m.op) {
          case 'claim':
            hooks.claim(m.channel);
            break;
          case 'records':
            for (const r of m.records) hooks.applied(r);
            break;
          case 'arrived':
            this.#bytes = m.bytes;
            // A rejected gate means the receiver failed: it destroys this link itself.
            hooks.arrived(m.pass).then((last) => thread.post({ op: 'release', pass: m.pass, last }), () => undefined);
            break;
          case 'ended':
            this.#bytes = m.bytes;
            hooks.ended(m.pass);
            done.resolve();
            break;
        }
      } catch (e) {
        done.reject(e);
      }
    }, (e) => done.reject(e));
    return done.promise;
  }

  destroy(): void {
    this.thread.destroy();
  }

  settled(): Promise<void> {
    return this.thread.settled();
  }
}

/**
 * The source's RAM channels in worker threads: each pass's dirty pages are cut into runs of up to
 * 256 pages (one RAM_PAGES record's worth) dealt to the workers in turn; each worker reads its
 * runs from guest RAM, frames them (zero pages as markers, digests with checksums) and sends
 * them on its connection.
 */
export class ThreadedRamChannelSender implements RamChannelsOut {
  readonly #threads: readonly ChannelThread[];
  /** Per worker, its requests not yet answered, in order. */
  readonly #pending: Deferred<Extract<WorkerMessage, { op: 'done' }>>[][];
  readonly #bytes: number[];
  readonly #pacer: BandwidthPacer | undefined;
  #failure: Error | undefined;
  #turn = 0;

  /**
   * @throws ArgumentError without a channel or when the channels cannot run in threads (see
   *   {@link ramChannelThreadsPossible}); MigrationTransportError, HostError or
   *   MigrationChannelThreadError when a connection cannot be handed over (every transport and
   *   worker is dropped then).
   */
  constructor(transports: readonly MigrationTransport[], options: ThreadOptions & { readonly checksums?: boolean; readonly pacer?: BandwidthPacer }) {
    this.#pacer = options.pacer;
    if (transports.length === 0) throw new ArgumentError('ThreadedRamChannelSender: no channel');
    if (!ramChannelThreadsPossible(options.memory, transports)) throw new ArgumentError('ThreadedRamChannelSender: guest RAM or a connection cannot be shared with a thread');
    const ram = sharedRam(options.memory);
    const channels = transports.length;
    this.#threads = startThreads(transports, { role: 'send', ram, channels, checksums: options.checksums === true }, options.threadModule);
    this.#pending = this.#threads.map(() => []);
    this.#bytes = this.#threads.map(() => 0);
    this.#threads.forEach((thread, i) => thread.listen((m) => {
      if (m.op !== 'done') return;
      this.#bytes[i] = m.bytes;
      this.#pending[i]!.shift()?.resolve(m);
    }, (e) => this.#fail(e)));
  }

  get channels(): number {
    return this.#threads.length;
  }

  get bytesWritten(): number {
    return this.#bytes.reduce((a, b) => a + b, 0);
  }

  async open(): Promise<void> {
    await Promise.all(this.#threads.map((_, i) => this.#request(i, { op: 'open', channel: i })));
  }

  async send(memory: GuestMemory, blockIndex: number, dirty: DirtyBitmap): Promise<RamSendResult> {
    const block = memory.blocks[blockIndex];
    if (!block) throw new ArgumentError(`sendDirtyPages: RAM block ${blockIndex} does not exist (there are ${memory.blocks.length})`);
    if (dirty.pages !== block.pages) throw new ArgumentError(`sendDirtyPages: a bitmap of ${dirty.pages} pages for RAM block ${block.name} of ${block.pages}`);
    const n = this.#threads.length;
    // Each worker's requests: runs (first page, count) of at most PACED_REQUEST_PAGES pages in all.
    const requests: { runs: number[]; pages: number }[][] = this.#threads.map(() => [{ runs: [], pages: 0 }]);
    const words = new Uint32Array(dirty.bytes.buffer, dirty.bytes.byteOffset, dirty.bytes.byteLength >>> 2);
    for (let page = dirty.nextSetBit(0); page >= 0 && page < block.pages; page = dirty.nextSetBit(page)) {
      const end = nextClearBit(words, page, block.pages);
      for (let first = page; first < end; first += MAX_DATA_PAGES) {
        const count = Math.min(MAX_DATA_PAGES, end - first);
        const list = requests[this.#turn]!;
        if (list.at(-1)!.pages + count > PACED_REQUEST_PAGES) list.push({ runs: [], pages: 0 });
        const last = list.at(-1)!;
        last.runs.push(first, count);
        last.pages += count;
        this.#turn = (this.#turn + 1) % n;
      }
      page = end;
    }
    const start = this.bytesWritten;
    const replies: Promise<{ pages: number; zeroPages: number }>[] = [];
    // Dealt in rounds, a request per worker each, paced by what they will put on the wire.
    for (let round = 0; requests.some((list) => round < list.length); round++) {
      for (let i = 0; i < n; i++) {
        const request = requests[i]![round];
        if (!request || request.pages === 0) continue;
        await this.#pacer?.pace(request.pages * memory.pageSize);
        const runs = Uint32Array.from(request.runs);
        replies.push(this.#request(i, { op: 'send', block: blockIndex, runs }, [runs.buffer]));
      }
    }
    const done = await Promise.all(replies);
    return { pages: sum(done, 'pages'), zeroPages: sum(done, 'zeroPages'), bytes: this.bytesWritten - start };
  }

  async sync(pass: number): Promise<void> {
    await Promise.all(this.#threads.map((_, i) => this.#request(i, { op: 'sync', pass })));
  }

  async end(): Promise<void> {
    await Promise.all(this.#threads.map((_, i) => this.#request(i, { op: 'end' })));
    await this.settled();
  }

  destroy(): void {
    for (const t of this.#threads) t.destroy();
    this.#fail(new MigrationChannelThreadError(0, this.#threads[0]!.name, 'was stopped: the RAM channels were destroyed'));
  }

  settled(): Promise<void> {
    return Promise.all(this.#threads.map((t) => t.settled())).then(() => undefined);
  }

  #request(i: number, request: SenderRequest, transfer?: ArrayBuffer[]): Promise<Extract<WorkerMessage, { op: 'done' }>> {
    if (this.#failure) return Promise.reject(this.#failure);
    const reply = new Deferred<Extract<WorkerMessage, { op: 'done' }>>();
    this.#pending[i]!.push(reply);
    this.#threads[i]!.post(request, transfer);
    return reply.promise;
  }

  #fail(e: Error): void {
    if (this.#failure) return;
    this.#failure = e;
    for (const list of this.#pending) for (const p of list.splice(0)) p.reject(e);
    for (const t of this.#threads) t.destroy();
  }
}

const sum = (list: readonly { pages: number; zeroPages: number }[], key: 'pages' | 'zeroPages'): number => list.reduce((n, r) => n + r[key], 0);
