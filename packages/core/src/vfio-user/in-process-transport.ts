// A pair of connected vfio-user transports inside one process, for tests: messages go through
// the same framing and limits as on a socket, fds are duplicated through the host port as
// SCM_RIGHTS would, and delivery happens from the event loop (never inside send).

import type { VmmError } from '../errors/vmm-error-base.js';
import type { HostKernel } from '../host/host-kernel.js';
import { deliverFramed, VfioUserFramer } from './framer.js';
import type { VfioUserLimits, VfioUserMessage } from './message.js';
import { DEFAULT_LIMITS } from './socket-transport.js';
import type { VfioUserTransport, VfioUserTransportHandlers } from './transport.js';
import { VfioUserTransportError } from './vfio-user-errors.js';

/** One end of an in-process pair. */
export class InProcessTransport implements VfioUserTransport {
  #peer: InProcessTransport | undefined;
  #handlers: VfioUserTransportHandlers | undefined;
  readonly #framer: VfioUserFramer;
  /** Arrived before `start`, or waiting for the event loop. */
  readonly #inbox: { bytes: Uint8Array; fds: number[] }[] = [];
  #scheduled = false;
  #open = true;

  private constructor(readonly endpoint: string, private readonly host: HostKernel, limits: VfioUserLimits) {
    this.#framer = new VfioUserFramer(limits);
  }

  /** Two connected ends; fds sent are duplicated with `host.dup`. */
  static pair(host: HostKernel, limits: VfioUserLimits = DEFAULT_LIMITS): [InProcessTransport, InProcessTransport] {
    const a = new InProcessTransport('in-process', host, limits);
    const b = new InProcessTransport('in-process', host, limits);
    a.#peer = b;
    b.#peer = a;
    return [a, b];
  }

  get open(): boolean {
    return this.#open;
  }

  start(handlers: VfioUserTransportHandlers): void {
    this.#handlers = handlers;
    this.#schedule();
  }

  send(message: Uint8Array, fds: readonly number[] = []): void {
    if (!this.#open) throw new VfioUserTransportError(this.endpoint, 'send on a closed connection');
    const peer = this.#peer!;
    if (!peer.#open) return; // like a socket whose peer is gone: the bytes go nowhere
    const dups: number[] = [];
    try {
      for (const fd of fds) dups.push(this.host.dup(fd));
    } catch (e) {
      // As on a socket whose sendmsg fails: the connection ends, and the owner hears it in closed().
      for (const fd of dups) this.host.close(fd);
      this.#end(new VfioUserTransportError(this.endpoint, 'send failed', { cause: e }));
      return;
    }
    peer.#inbox.push({ bytes: message.slice(), fds: dups });
    peer.#schedule();
  }

  close(): void {
    this.#end(undefined);
  }

  #schedule(): void {
    if (this.#scheduled || !this.#handlers) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#deliver();
    });
  }

  #deliver(): void {
    const to = { open: () => this.#open, deliver: (m: VfioUserMessage) => this.#handlers!.message(m), discard: (fds: readonly number[]) => this.#closeFds(fds) };
    while (this.#open && this.#inbox.length) {
      const { bytes, fds } = this.#inbox.shift()!;
      const broken = deliverFramed(this.#framer, bytes, fds, to);
      if (broken) {
        this.#end(broken);
        return;
      }
    }
    if (this.#open && !this.#peer!.#open && this.#inbox.length === 0) this.#end(undefined);
  }

  #end(error: VmmError | undefined): void {
    if (!this.#open) return;
    this.#open = false;
    const leftover = [...this.#inbox.flatMap((m) => m.fds), ...this.#framer.takePendingFds()];
    this.#inbox.length = 0;
    this.#closeFds(leftover);
    this.#handlers?.closed(error);
    // The peer sees the end of the stream once it has read what was sent before.
    const peer = this.#peer;
    if (peer) peer.#schedule();
  }

  #closeFds(fds: readonly number[]): void {
    for (const fd of fds) {
      try {
        this.host.close(fd);
      } catch {
        // Released anyway (close frees the fd even when it fails).
      }
    }
  }
}
