// The client end of one vfio-user connection (QEMU's hw/vfio-user/proxy.c): commands go out with
// a message id and their reply is matched to it; the server's own commands (DMA_READ and
// DMA_WRITE on windows without a file) are answered from guest memory. A server that dies,
// stalls or breaks the protocol fails the proxy once: every pending and later request rejects
// with a VfioError naming the device, and the connection is closed. The VM is not touched.

import { VfioError, type HostKernel, type VmmError } from '@vmmkit/core';
import {
  DEFAULT_CAPABILITIES, VFIO_USER_DMA_READ, VFIO_USER_DMA_WRITE, VFIO_USER_F_NO_REPLY, VFIO_USER_F_TYPE_COMMAND,
  VFIO_USER_MAJOR, VFIO_USER_MINOR, VFIO_USER_VERSION, VfioUserProtocolError, decodeDmaAccess, decodeVersion,
  encodeDmaReadReply, encodeDmaWriteReply, encodeMessage, encodeVersion, isErrorReply, isReply, replyHeader,
  vfioUserCommandName, type VfioUserCapabilities, type VfioUserMessage, type VfioUserTransport,
} from '@vmmkit/core/vfio-user';
import { ERRNO, errnoName } from '@vmmkit/core';
import { checkServerVersion } from './server-version.js';

/** Where the server's DMA_READ / DMA_WRITE land: the device's view of guest memory. */
export interface VfioUserDmaTarget {
  /**
   * Whether the device may master the bus now (its command register's bus-master bit). While
   * not, the server's DMA is refused with ENODEV, as QEMU's vfio_user_pci_process_req does.
   */
  busMaster(): boolean;
  /** Read `count` bytes at DMA address `address`; throws for an address outside guest memory. */
  read(address: bigint, count: number): Uint8Array;
  /** Write `data` at DMA address `address`; throws for an address outside guest memory. */
  write(address: bigint, data: Uint8Array): void;
}

export interface VfioUserProxyOptions {
  /** The device's name (id or socket path), in every error. */
  readonly device: string;
  readonly transport: VfioUserTransport;
  readonly host: HostKernel;
  /** How long a command waits for its reply before the server counts as stalled. Default 5000 ms. */
  readonly timeoutMs?: number;
  /** What the client offers in VERSION. Default: 16 fds, 1 MiB transfers, 4 KiB pages. */
  readonly capabilities?: VfioUserCapabilities;
}

/**
 * The capabilities a client offers unless told otherwise: what QEMU 11.1 sends, migration
 * included (dirty pages logged at 4 KiB, bitmaps of up to 256 MiB in one message), which vmmkit,
 * unlike QEMU, then uses.
 */
export const CLIENT_CAPABILITIES: VfioUserCapabilities = Object.freeze({
  ...DEFAULT_CAPABILITIES, maxMsgFds: 16, writeMultiple: false,
  migration: Object.freeze({ pgsize: 4096n, maxBitmapSize: 256n << 20n }),
});

interface Pending {
  readonly command: number;
  /** When the reply is due (performance.now() milliseconds). */
  readonly deadline: number;
  resolve(message: VfioUserMessage): void;
  reject(error: VmmError): void;
}

/** The errors `request` made of the server's error replies. */
const refusals = new WeakSet<VfioError>();

/**
 * Whether `e` is a server's error reply to a command (the connection is fine and the device
 * usable), rather than a connection that failed or closed.
 */
export function isServerRefusal(e: unknown): boolean {
  return e instanceof VfioError && refusals.has(e);
}

/** One connection to a vfio-user server, owned by the device it serves. */
export class VfioUserProxy {
  readonly device: string;
  readonly #transport: VfioUserTransport;
  readonly #host: HostKernel;
  readonly #timeoutMs: number;
  readonly #offer: VfioUserCapabilities;
  readonly #pending = new Map<number, Pending>();
  #nextId = 0;
  /**
   * One timer for all pending commands, due at the oldest one's deadline: commands are sent in
   * order with the same timeout, so the first in `#pending` is always the next to expire, and a
   * timer per command would cost a setTimeout/clearTimeout pair on every register access.
   */
  #timer: ReturnType<typeof setTimeout> | undefined;
  #capabilities: VfioUserCapabilities | undefined;
  #failure: VfioError | undefined;
  #closed = false;
  /** Where the server's DMA goes; undefined until the device sets it (DMA is refused until then). */
  dmaTarget: VfioUserDmaTarget | undefined;
  /** Told once when the proxy fails (the device marks itself failed). */
  onFailure: ((error: VfioError) => void) | undefined;

  constructor(options: VfioUserProxyOptions) {
    this.device = options.device;
    this.#transport = options.transport;
    this.#host = options.host;
    this.#timeoutMs = options.timeoutMs ?? 5000;
    this.#offer = options.capabilities ?? CLIENT_CAPABILITIES;
    this.#transport.start({ message: (m) => this.#onMessage(m), closed: (e) => this.#onClosed(e) });
  }

  /** The negotiated capabilities (after `connect`). */
  get capabilities(): VfioUserCapabilities {
    if (!this.#capabilities) throw new VfioError('use the vfio-user connection', this.device, { detail: 'VERSION was not negotiated' });
    return this.#capabilities;
  }

  /** Whether VERSION was negotiated. */
  get connected(): boolean {
    return this.#capabilities !== undefined;
  }

  /** Why the proxy failed, once it has: the device is unusable from then on. */
  get failure(): VfioError | undefined {
    return this.#failure;
  }

  /** Requests sent and not answered yet. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /**
   * Negotiate the version (VFIO_USER_VERSION): the server must answer major 0, a minor no higher
   * than ours, and capabilities within what we offered.
   * @throws VfioError naming the device when the server refuses or answers out of bounds.
   */
  async connect(): Promise<VfioUserCapabilities> {
    const reply = await this.request(VFIO_USER_VERSION, encodeVersion({ major: VFIO_USER_MAJOR, minor: VFIO_USER_MINOR, capabilities: this.#offer }));
    let caps: VfioUserCapabilities;
    try {
      caps = checkServerVersion(decodeVersion(reply.payload, reply.fds), this.#offer);
    } catch (e) {
      this.#closeFds(reply.fds);
      throw this.#fail(new VfioError('negotiate the vfio-user version', this.device, { cause: e, errno: 'EINVAL' }));
    }
    this.#capabilities = caps;
    return caps;
  }

  /**
   * Send a command and await its reply. The caller owns the reply's fds (closes those it does
   * not keep). The fds passed are the caller's still (the transport sends duplicates).
   * @throws VfioError naming the device and command: with the server's errno for an error
   *   reply (the device stays usable), ETIMEDOUT / ENOTCONN / EPROTO when the connection failed.
   */
  request(command: number, payload: Uint8Array = new Uint8Array(0), fds: readonly number[] = []): Promise<VfioUserMessage> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(this.#error(command, 'the connection is closed', 'ENOTCONN'));
    const msgId = this.#allocateId();
    return new Promise<VfioUserMessage>((resolve, reject) => {
      this.#pending.set(msgId, { command, deadline: performance.now() + this.#timeoutMs, resolve, reject });
      this.#timer ??= setTimeout(() => this.#expire(), this.#timeoutMs);
      try {
        this.#transport.send(encodeMessage({ msgId, command, flags: VFIO_USER_F_TYPE_COMMAND, error: 0 }, payload), fds);
      } catch (e) {
        this.#fail(this.#error(command, 'the message could not be sent', 'ENOTCONN', e));
      }
    });
  }

  /** Settle a waiting command with its reply: an error reply rejects (its fds closed), the device stays usable. */
  #settle(p: Pending, m: VfioUserMessage): void {
    if (!isErrorReply(m.header)) {
      p.resolve(m);
      return;
    }
    this.#closeFds(m.fds);
    const errno = m.header.error === 0 ? 'EINVAL' : errnoName(m.header.error);
    const refusal = new VfioError(vfioUserCommandName(p.command), this.device, { detail: `the server answered ${errno}`, errno });
    refusals.add(refusal);
    p.reject(refusal);
  }

  /** Send a command that wants no reply (a posted write). */
  post(command: number, payload: Uint8Array): void {
    if (this.#failure) throw this.#failure;
    if (this.#closed) throw this.#error(command, 'the connection is closed', 'ENOTCONN');
    this.#transport.send(encodeMessage({ msgId: this.#allocateId(), command, flags: VFIO_USER_F_NO_REPLY, error: 0 }, payload));
  }

  /** Close the connection (idempotent). Pending requests reject with ENOTCONN; the proxy is not failed by it. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#rejectAll(undefined);
    this.#transport.close();
  }

  #allocateId(): number {
    // 16-bit ids: skip one still waiting for its reply (only after 65536 outstanding commands).
    for (let i = 0; i < 0x10000; i++) {
      this.#nextId = (this.#nextId + 1) & 0xffff;
      if (!this.#pending.has(this.#nextId)) return this.#nextId;
    }
    throw this.#fail(new VfioError('send a vfio-user command', this.device, { detail: 'every message id is in use', errno: 'EBUSY' }));
  }

  #onMessage(m: VfioUserMessage): void {
    if (isReply(m.header)) {
      const p = this.#pending.get(m.header.msgId);
      if (!p || p.command !== m.header.command) {
        this.#closeFds(m.fds);
        const what = `a reply to ${vfioUserCommandName(m.header.command)} with id ${m.header.msgId} no command is waiting for`;
        this.#fail(new VfioError('talk to the vfio-user server', this.device, { detail: what, errno: 'EPROTO' }));
        return;
      }
      // The timer stays armed when nothing is pending: it finds nothing when it fires, and the
      // next command does not pay for arming one.
      this.#pending.delete(m.header.msgId);
      this.#settle(p, m);
      return;
    }
    this.#closeFds(m.fds);
    if (this.#failure || this.#closed) return;
    this.#serveCommand(m);
  }

  /** A command from the server: DMA_READ / DMA_WRITE from guest memory; anything else is refused. */
  #serveCommand(m: VfioUserMessage): void {
    const { command } = m.header;
    let reply: Uint8Array | number;
    if (command !== VFIO_USER_DMA_READ && command !== VFIO_USER_DMA_WRITE) reply = ERRNO.EINVAL;
    else reply = this.#serveDma(m);
    if (m.header.flags & VFIO_USER_F_NO_REPLY) return;
    try {
      if (typeof reply === 'number') this.#transport.send(encodeMessage(replyHeader(m.header, reply)));
      else this.#transport.send(encodeMessage(replyHeader(m.header), reply));
    } catch (e) {
      this.#fail(this.#error(command, 'the reply could not be sent', 'ENOTCONN', e));
    }
  }

  /** The reply payload of a DMA access, or the errno it is refused with. */
  #serveDma(m: VfioUserMessage): Uint8Array | number {
    const { command } = m.header;
    let access;
    try {
      access = decodeDmaAccess(command, m.payload, [], this.#capabilities?.maxDataXferSize ?? this.#offer.maxDataXferSize);
    } catch (e) {
      return e instanceof VfioUserProtocolError ? e.errnoNumber : ERRNO.EINVAL;
    }
    const target = this.dmaTarget;
    if (!target || !target.busMaster()) return ERRNO.ENODEV;
    try {
      if (command === VFIO_USER_DMA_READ) return encodeDmaReadReply(access.address, target.read(access.address, Number(access.count)));
      target.write(access.address, access.data!);
      return encodeDmaWriteReply(access.address, Number(access.count));
    } catch {
      // Outside guest memory: a bad address, as a DMA to nowhere would fault.
      return ERRNO.EFAULT;
    }
  }

  #onClosed(error: VmmError | undefined): void {
    if (this.#closed) return;
    this.#closed = true;
    const why = error ? 'the connection failed' : 'the server closed the connection';
    this.#fail(new VfioError('talk to the vfio-user server', this.device, { detail: why, errno: 'ENOTCONN', ...(error ? { cause: error } : {}) }));
  }

  /** Fail the proxy once: reject everything pending, close the connection, tell the device. Returns the failure. */
  #fail(error: VfioError): VfioError {
    if (this.#failure) return this.#failure;
    this.#failure = error;
    this.#rejectAll(error);
    this.#closed = true;
    this.#transport.close();
    this.onFailure?.(error);
    return error;
  }

  /** The timer fired: fail if the oldest command is overdue, else wait for its deadline. */
  #expire(): void {
    this.#timer = undefined;
    const oldest = this.#pending.values().next().value;
    if (!oldest) return;
    const left = oldest.deadline - performance.now();
    if (left > 0) {
      this.#timer = setTimeout(() => this.#expire(), Math.ceil(left));
      return;
    }
    this.#fail(this.#error(oldest.command, `no reply within ${this.#timeoutMs} ms (the server stalled)`, 'ETIMEDOUT'));
  }

  #stopTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #rejectAll(error: VfioError | undefined): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    this.#stopTimer();
    for (const p of pending) {
      p.reject(error ?? this.#error(p.command, 'the connection was closed', 'ENOTCONN'));
    }
  }

  #error(command: number, detail: string, errno: string, cause?: unknown): VfioError {
    return new VfioError(vfioUserCommandName(command), this.device, { detail, errno, ...(cause === undefined ? {} : { cause }) });
  }

  #closeFds(fds: readonly number[]): void {
    for (const fd of fds) {
      try {
        this.#host.close(fd);
      } catch {
        // close(2) frees the descriptor even when it fails.
      }
    }
  }
}
