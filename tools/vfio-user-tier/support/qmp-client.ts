// A small client of QEMU's QMP (docs/interop/qmp-spec.rst): the greeting, capabilities
// negotiation, commands with ids, and asynchronous events kept until someone asks for them.

import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { readLines } from './line-reader.js';
import { QemuPeerError } from './peer-error.js';

/** An asynchronous QMP event (`RESET`, `SHUTDOWN`, ...). */
export interface QmpEvent {
  readonly event: string;
  readonly data?: Record<string, unknown>;
  readonly timestamp: { seconds: number; microseconds: number };
}

/** QEMU's version as its greeting states it. */
export interface QmpGreeting {
  readonly version: { qemu: { major: number; minor: number; micro: number }; package: string };
  readonly capabilities: readonly string[];
}

interface Waiter {
  readonly resolve: (value: unknown) => void;
  readonly reject: (e: Error) => void;
  readonly command: string;
}

/** One QMP session on a Unix socket, in command mode once `connect` resolved. */
export class QmpClient {
  readonly #socket: Socket;
  readonly #waiters = new Map<number, Waiter>();
  /** Events not taken by `waitForEvent` yet, oldest first. */
  readonly #events: QmpEvent[] = [];
  readonly #eventWaiters: { name: string; resolve: (e: QmpEvent) => void }[] = [];
  #greeting: ((g: QmpGreeting) => void) | undefined;
  #nextId = 1;
  #closed: Error | undefined;
  #closeListeners: (() => void)[] = [];

  private constructor(socket: Socket) {
    this.#socket = socket;
    readLines(socket, (line) => this.#onLine(line));
    socket.on('error', () => { /* reported by 'close' */ });
    socket.on('close', () => this.#fail(new QemuPeerError('QEMU closed the QMP connection')));
  }

  /**
   * Connects to QEMU's `-qmp unix:PATH,server=on,wait=off` socket (retrying while QEMU is still
   * creating it, up to `timeoutMs`), reads the greeting and leaves capabilities negotiation.
   */
  static async connect(path: string, timeoutMs = 10_000): Promise<{ client: QmpClient; greeting: QmpGreeting }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const socket = await new Promise<Socket | NodeJS.ErrnoException>((resolve) => {
        const s = connect(path);
        s.once('connect', () => resolve(s));
        s.once('error', (e) => resolve(e));
      });
      if (!(socket instanceof Error)) {
        const client = new QmpClient(socket);
        const greeting = await client.#greet();
        await client.execute('qmp_capabilities');
        return { client, greeting };
      }
      if ((socket.code !== 'ENOENT' && socket.code !== 'ECONNREFUSED') || Date.now() > deadline) {
        throw new QemuPeerError(`cannot connect to QMP at ${path}: ${socket.code ?? socket.message}`);
      }
      await sleep(20);
    }
  }

  /** Runs a command; resolves to its `return`, rejects with QEMU's error class and description. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.#closed) return Promise.reject(new QemuPeerError(`QMP ${command}: ${this.#closed.message}`));
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#waiters.set(id, { resolve: resolve as (v: unknown) => void, reject, command });
      this.#socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  /** The oldest event named `name` not taken yet, waiting up to `timeoutMs` for one to come. */
  async waitForEvent(name: string, timeoutMs = 10_000): Promise<QmpEvent> {
    const queued = this.#events.findIndex((e) => e.event === name);
    if (queued >= 0) return this.#events.splice(queued, 1)[0]!;
    if (this.#closed) throw new QemuPeerError(`waiting for QMP event ${name}: ${this.#closed.message}`);
    let waiter: { name: string; resolve: (e: QmpEvent) => void } | undefined;
    const timer = new AbortController();
    try {
      return await Promise.race([
        new Promise<QmpEvent>((resolve) => {
          waiter = { name, resolve };
          this.#eventWaiters.push(waiter);
        }),
        sleep(timeoutMs, undefined, { signal: timer.signal }).then(() => {
          throw new QemuPeerError(`no QMP event ${name} within ${timeoutMs} ms`);
        }),
      ]);
    } finally {
      timer.abort();
      const at = this.#eventWaiters.indexOf(waiter!);
      if (at >= 0) this.#eventWaiters.splice(at, 1);
    }
  }

  /** Events that arrived and were not taken, without taking them. */
  get pendingEvents(): readonly QmpEvent[] {
    return this.#events;
  }

  /** Called once, when QEMU's side of the session ends (QEMU quit or died). */
  onClose(listener: () => void): void {
    if (this.#closed) listener();
    else this.#closeListeners.push(listener);
  }

  close(): void {
    this.#socket.destroy();
  }

  #greet(): Promise<QmpGreeting> {
    return new Promise<QmpGreeting>((resolve, reject) => {
      this.#greeting = resolve;
      this.onClose(() => reject(new QemuPeerError('QEMU closed the QMP connection before its greeting')));
    });
  }

  #onLine(line: string): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.#fail(new QemuPeerError(`QMP sent a line that is not JSON: ${line.slice(0, 120)}`));
      return;
    }
    if ('QMP' in message) {
      this.#greeting?.(message['QMP'] as QmpGreeting);
      this.#greeting = undefined;
    } else if ('event' in message) {
      const event = message as unknown as QmpEvent;
      const waiter = this.#eventWaiters.findIndex((w) => w.name === event.event);
      if (waiter >= 0) this.#eventWaiters.splice(waiter, 1)[0]!.resolve(event);
      else this.#events.push(event);
    } else {
      const id = message['id'] as number;
      const waiter = this.#waiters.get(id);
      if (!waiter) return; // an answer to a command sent before this client (none are)
      this.#waiters.delete(id);
      if ('error' in message) {
        const error = message['error'] as { class: string; desc: string };
        waiter.reject(new QemuPeerError(`QMP ${waiter.command}: ${error.class}: ${error.desc}`));
      } else {
        waiter.resolve(message['return']);
      }
    }
  }

  #fail(e: Error): void {
    if (this.#closed) return;
    this.#closed = e;
    for (const [, w] of this.#waiters) w.reject(new QemuPeerError(`QMP ${w.command}: ${e.message}`));
    this.#waiters.clear();
    this.#socket.destroy();
    for (const l of this.#closeListeners.splice(0)) l();
  }
}
