// One QMP client (QEMU's MonitorQMP): the greeting, capabilities negotiation, commands one at a
// time with `id` echoed, and events once negotiated. A client that breaks the JSON stream is
// dropped; the VM and the other clients never notice.

import { VmmError } from '@vmmkit/core';
import { checkArgs, isObject, type QmpArgs, type QmpValue } from './qmp-args.js';
import type { QmpClientFds, QmpCommand } from './qmp-command.js';
import { genericError, QmpError } from './qmp-error.js';
import { JsonSplitter, type JsonSplitterLimits } from './json-splitter.js';

/**
 * A descriptor that came with a client's bytes: the VM host's fd, or one that could not be made
 * the VM host's (the server's process fd it was, and why), which the command that wanted it
 * reports instead of saying none came.
 */
export type ReceivedFd = number | { readonly refused: number; readonly why: string };

/** Where a session's output goes, and how it ends: a socket, or an in-process client. */
export interface QmpPeer {
  write(text: string): void;
  /** Close the connection (after what was written). */
  end(): void;
}

/** What a session needs from its server. */
export interface QmpSessionHost {
  readonly greeting: () => object;
  /** The negotiated command set. */
  command(name: string): QmpCommand | undefined;
  /** Run a command (the server gives it the VM and itself). */
  run(command: QmpCommand, args: QmpArgs, fds: QmpClientFds): Promise<unknown>;
  /** Close a descriptor the session owns (on the VM's host). */
  closeFd(fd: number): void;
  /** The session ended: forget it. */
  ended(session: QmpSession): void;
}

const NEGOTIATION_MEMBERS = new Set(['execute', 'arguments', 'id']);

export class QmpSession {
  readonly #splitter: JsonSplitter;
  /** Descriptors that arrived before the message they came for was complete. */
  readonly #waiting: ReceivedFd[] = [];
  /** Descriptors of the command running now (it takes what it uses, the rest are closed after it). */
  #current: ReceivedFd[] = [];
  readonly #fds: QmpClientFds;
  #negotiated = false;
  #ended = false;
  /** Commands run one after the other: each waits for the one before. */
  #queue: Promise<void> = Promise.resolve();

  constructor(private readonly host: QmpSessionHost, private readonly peer: QmpPeer, limits: JsonSplitterLimits = {}) {
    this.#splitter = new JsonSplitter(limits);
    this.#fds = { takeReceived: () => takeFd(this.#current), named: new Map() };
    this.#send(host.greeting());
  }

  /** Whether the client negotiated capabilities (only such clients get events). */
  get negotiated(): boolean {
    return this.#negotiated;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Bytes from the client, with descriptors that came with them (owned by the session from now:
   * a command takes them, or they are closed after the command they came with). A socket
   * delivers a message's fds with the chunk holding its last byte or before it (QEMU's clients
   * send them with the command, or with a byte ahead of it): the fds belong to the message that
   * holds or follows the chunk's last byte, so a command still running never sees the next
   * one's.
   */
  receive(bytes: Uint8Array, fds: readonly ReceivedFd[] = []): void {
    if (this.#ended) {
      for (const fd of fds) this.#closeFd(fd);
      return;
    }
    let texts: string[];
    try {
      texts = this.#splitter.feed(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    } catch (e) {
      for (const fd of fds) this.#closeFd(fd);
      this.#drop(e);
      return;
    }
    const last = bytes.byteLength ? bytes[bytes.byteLength - 1]! : 0x20;
    // Outside a message only whitespace is accepted: a last byte that is not means it closed one.
    const endsMessage = texts.length > 0 && !this.#splitter.pending && !isJsonSpace(last);
    if (!endsMessage) this.#waiting.push(...fds);
    texts.forEach((text, i) => {
      const mine = i === 0 ? this.#waiting.splice(0) : [];
      if (endsMessage && i === texts.length - 1) mine.push(...fds);
      this.#queue = this.#queue.then(() => this.#handle(text, mine));
    });
  }

  /** Send an event (the server calls this for negotiated sessions only). */
  event(message: object): void {
    if (!this.#ended) this.#send(message);
  }

  /** The connection closed, or the server ends the session: release what the client held. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    for (const fd of this.#waiting.splice(0)) this.#closeFd(fd);
    for (const fd of this.#fds.named.values()) this.#closeFd(fd);
    this.#fds.named.clear();
    this.peer.end();
    this.host.ended(this);
  }

  /** Wait for the commands received so far to be answered. */
  settled(): Promise<void> {
    return this.#queue;
  }

  async #handle(text: string, fds: ReceivedFd[]): Promise<void> {
    if (this.#ended) {
      for (const fd of fds) this.#closeFd(fd);
      return;
    }
    this.#current = fds;
    let request: unknown;
    try {
      request = JSON.parse(text);
    } catch (e) {
      for (const fd of fds.splice(0)) this.#closeFd(fd);
      this.#drop(genericError(`JSON parse error, ${e instanceof Error ? e.message : String(e)}`));
      return;
    }
    const id = isObject(request) ? request.id : undefined;
    let reply: object;
    try {
      const result = await this.#dispatch(request);
      reply = id === undefined ? { return: result ?? {} } : { return: result ?? {}, id };
    } catch (e) {
      reply = id === undefined ? { error: describe(e) } : { error: describe(e), id };
    }
    // Descriptors the command did not take are not kept for the next one (QEMU closes them too),
    // and are closed before the answer goes out: a client that has the answer finds them closed.
    for (const fd of fds.splice(0)) this.#closeFd(fd);
    this.#send(reply);
  }

  async #dispatch(request: unknown): Promise<unknown> {
    if (!isObject(request)) throw genericError('QMP input must be a JSON object');
    for (const key of Object.keys(request)) {
      if (!NEGOTIATION_MEMBERS.has(key)) throw genericError(`QMP input member '${key}' is unexpected`);
    }
    const { execute, arguments: args = {} } = request;
    if (execute === undefined) throw genericError("QMP input lacks member 'execute'");
    if (typeof execute !== 'string') throw genericError("QMP input member 'execute' must be a string");
    if (!isObject(args)) throw genericError("QMP input member 'arguments' must be an object");
    if (execute === 'qmp_capabilities') return this.#negotiate(args);
    if (!this.#negotiated) throw new QmpError('CommandNotFound', "Expecting capabilities negotiation with 'qmp_capabilities'");
    const command = this.host.command(execute);
    if (!command) throw new QmpError('CommandNotFound', `The command ${execute} has not been found`);
    checkArgs(args, command.args, { extra: command.extraArgs });
    return this.host.run(command, args, this.#fds);
  }

  #negotiate(args: Readonly<Record<string, QmpValue>>): object {
    if (this.#negotiated) throw new QmpError('CommandNotFound', 'Capabilities negotiation is already complete, command ignored');
    checkArgs(args, { '*enable': { list: { enum: ['oob'] } } });
    // vmmkit offers no capability (no out-of-band execution): QEMU's answer when one is asked for.
    for (const capability of (args.enable as string[] | undefined) ?? []) throw genericError(`Capability '${capability}' not available`);
    this.#negotiated = true;
    return {};
  }

  /** Tell the client why (when it can still hear it) and hang up. */
  #drop(why: unknown): void {
    this.#send({ error: describe(why) });
    this.end();
  }

  #send(message: object): void {
    if (this.#ended) return;
    this.peer.write(`${JSON.stringify(message)}\r\n`);
  }

  #closeFd(fd: ReceivedFd): void {
    // A refused descriptor was closed when it was refused.
    if (typeof fd !== 'number') return;
    try {
      this.host.closeFd(fd);
    } catch {
      // Already gone on the host: nothing left to release.
    }
  }
}

/**
 * The next descriptor of a command, which it owns from here; undefined when none came.
 * @throws QmpError saying which descriptor could not be taken over and why, when that one was refused.
 */
function takeFd(fds: ReceivedFd[]): number | undefined {
  const next = fds.shift();
  if (next === undefined || typeof next === 'number') return next;
  throw genericError(`The file descriptor supplied via SCM_RIGHTS (fd ${next.refused} of the VMM process) could not be taken over: ${next.why}`);
}

const isJsonSpace = (b: number): boolean => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;

/** An error as QMP reports it: QEMU's class, and the message. */
function describe(e: unknown): { class: string; desc: string } {
  if (e instanceof QmpError) return { class: e.errorClass, desc: e.message };
  if (e instanceof VmmError) return { class: 'GenericError', desc: e.message };
  return { class: 'GenericError', desc: e instanceof Error ? e.message : String(e) };
}
