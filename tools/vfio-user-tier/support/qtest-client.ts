// A client of QEMU's qtest protocol (system/qtest.c): with `-accel qtest`, no CPU runs, and this
// client plays the guest's CPU instead. One text line per request; QEMU answers each with a line
// starting `OK`, `FAIL` or `ERR`, in order, and may put `IRQ raise N` / `IRQ lower N` lines
// between answers once an interrupt controller's inputs are intercepted (irq_intercept_in).
//
// As libqtest does, the client listens and QEMU connects (`-qtest unix:PATH`): the socket exists
// before QEMU starts, so there is nothing to poll for.

import { createServer, type Server, type Socket } from 'node:net';
import { rmSync } from 'node:fs';
import { EventEmitter } from 'eventemitter3';
import { readLines } from './line-reader.js';
import { QemuPeerError } from './peer-error.js';

/** An interrupt line of the intercepted controller changed level. */
export interface IrqChange {
  readonly line: number;
  readonly level: boolean;
}

interface Pending {
  readonly command: string;
  readonly resolve: (words: string[]) => void;
  readonly reject: (e: Error) => void;
}

const hex = (v: number | bigint): string => `0x${v.toString(16)}`;

/** The listening end QEMU's `-qtest unix:PATH` connects to. Owns the socket file at `path`. */
export class QtestListener {
  readonly #server: Server;
  readonly #connection: Promise<Socket>;

  private constructor(readonly path: string, server: Server, connection: Promise<Socket>) {
    this.#server = server;
    this.#connection = connection;
  }

  static async listen(path: string): Promise<QtestListener> {
    const server = createServer();
    const connection = new Promise<Socket>((resolve) => server.once('connection', resolve));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new QtestListener(path, server, connection);
  }

  /**
   * The client on QEMU's connection, once QEMU connected. `gone` settles when QEMU exits first,
   * so a QEMU that fails before connecting is reported instead of waited for.
   */
  async accept(gone: Promise<unknown>): Promise<QtestClient> {
    const socket = await Promise.race([
      this.#connection,
      gone.then(() => { throw new QemuPeerError('QEMU exited before it connected to the qtest socket'); }),
    ]);
    return new QtestClient(socket);
  }

  /** Stops listening and removes the socket file (QEMU's connection, if any, stays with its client). */
  close(): void {
    this.#server.close();
    rmSync(this.path, { force: true });
  }
}

/** The guest's CPU, played over a qtest connection. Requests may overlap; answers come in order. */
export class QtestClient {
  readonly #socket: Socket;
  readonly #pending: Pending[] = [];
  readonly #levels = new Map<number, boolean>();
  readonly #irqs = new EventEmitter<{ irq: [IrqChange] }>();
  #closed: Error | undefined;

  constructor(socket: Socket) {
    this.#socket = socket;
    readLines(socket, (line) => this.#onLine(line));
    socket.on('error', () => { /* reported by 'close' */ });
    socket.on('close', () => this.#fail(new QemuPeerError('QEMU closed the qtest connection')));
  }

  // --- port I/O (addresses up to 0xffff) ---
  outb(port: number, value: number): Promise<void> { return this.#ok(`outb ${hex(port)} ${hex(value)}`); }
  outw(port: number, value: number): Promise<void> { return this.#ok(`outw ${hex(port)} ${hex(value)}`); }
  outl(port: number, value: number): Promise<void> { return this.#ok(`outl ${hex(port)} ${hex(value >>> 0)}`); }
  inb(port: number): Promise<number> { return this.#number(`inb ${hex(port)}`); }
  inw(port: number): Promise<number> { return this.#number(`inw ${hex(port)}`); }
  inl(port: number): Promise<number> { return this.#number(`inl ${hex(port)}`); }

  // --- memory accesses through the CPU's address space (RAM and MMIO alike), little-endian ---
  writeb(addr: bigint, value: number): Promise<void> { return this.#ok(`writeb ${hex(addr)} ${hex(value)}`); }
  writew(addr: bigint, value: number): Promise<void> { return this.#ok(`writew ${hex(addr)} ${hex(value)}`); }
  writel(addr: bigint, value: number): Promise<void> { return this.#ok(`writel ${hex(addr)} ${hex(value >>> 0)}`); }
  writeq(addr: bigint, value: bigint): Promise<void> { return this.#ok(`writeq ${hex(addr)} ${hex(BigInt.asUintN(64, value))}`); }
  readb(addr: bigint): Promise<number> { return this.#number(`readb ${hex(addr)}`); }
  readw(addr: bigint): Promise<number> { return this.#number(`readw ${hex(addr)}`); }
  readl(addr: bigint): Promise<number> { return this.#number(`readl ${hex(addr)}`); }
  async readq(addr: bigint): Promise<bigint> { return BigInt((await this.#request(`readq ${hex(addr)}`))[0]!); }

  /** Reads `length` bytes of the guest's address space (b64read). */
  async read(addr: bigint, length: number): Promise<Uint8Array> {
    if (length <= 0) throw new QemuPeerError(`qtest read of ${length} bytes at ${hex(addr)}: the length must be positive`);
    const [data] = await this.#request(`b64read ${hex(addr)} ${length}`);
    const bytes = Buffer.from(data ?? '', 'base64');
    if (bytes.length !== length) throw new QemuPeerError(`qtest b64read ${hex(addr)} ${length} returned ${bytes.length} bytes`);
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  }

  /** Writes `data` into the guest's address space (b64write). */
  async write(addr: bigint, data: Uint8Array): Promise<void> {
    if (data.length === 0) throw new QemuPeerError(`qtest write of 0 bytes at ${hex(addr)}: QEMU refuses empty data`);
    return this.#ok(`b64write ${hex(addr)} ${data.length} ${Buffer.from(data).toString('base64')}`);
  }

  /** Fills `length` bytes with `value` (memset). */
  memset(addr: bigint, length: number, value: number): Promise<void> { return this.#ok(`memset ${hex(addr)} ${length} ${hex(value)}`); }

  /**
   * Advances the virtual clock by `ns`, or to the next timer deadline when `ns` is omitted.
   * Under `-accel qtest` virtual time moves only when the client says so: device timers (edu's
   * DMA) fire here. Resolves to the new clock, or undefined when no timer was pending.
   */
  async clockStep(ns?: number): Promise<bigint | undefined> {
    const words = await this.#request(ns === undefined ? 'clock_step' : `clock_step ${ns}`, true);
    return words[0] === 'OK' ? BigInt(words[1]!) : undefined;
  }

  /**
   * Intercepts the inputs of the device at QOM path `path` (`ioapic` on a PC): from now on their
   * level changes arrive as `irq` events and in `irqLevel`. QEMU allows one intercepted device.
   */
  irqInterceptIn(path: string): Promise<void> { return this.#ok(`irq_intercept_in ${path}`); }

  /** The last level reported for an intercepted line (false before any report). */
  irqLevel(line: number): boolean {
    return this.#levels.get(line) ?? false;
  }

  /** Lines reported high right now. */
  raisedIrqs(): number[] {
    return [...this.#levels].filter(([, level]) => level).map(([line]) => line);
  }

  onIrq(listener: (change: IrqChange) => void): () => void {
    this.#irqs.on('irq', listener);
    return () => this.#irqs.off('irq', listener);
  }

  /** Closes the connection (QEMU keeps running; with no client, nothing plays its CPU). */
  close(): void {
    this.#socket.destroy();
  }

  #ok(command: string): Promise<void> {
    return this.#request(command).then(() => undefined);
  }

  async #number(command: string): Promise<number> {
    return Number((await this.#request(command))[0]);
  }

  /** Sends one request; resolves to the words after `OK` (or all words, `FAIL` included, when `acceptFail`). */
  #request(command: string, acceptFail = false): Promise<string[]> {
    if (this.#closed) return Promise.reject(this.#closed);
    return new Promise<string[]>((resolve, reject) => {
      this.#pending.push({
        command,
        resolve: (words) => {
          if (words[0] === 'OK') resolve(acceptFail ? words : words.slice(1));
          else if (acceptFail && words[0] === 'FAIL') resolve(words);
          else reject(new QemuPeerError(`qtest '${command.slice(0, 60)}' answered '${words.join(' ')}'`));
        },
        reject,
      });
      this.#socket.write(`${command}\n`);
    });
  }

  #onLine(line: string): void {
    const words = line.trim().split(' ');
    if (words[0] === 'IRQ') {
      const change = { line: Number(words[2]), level: words[1] === 'raise' };
      this.#levels.set(change.line, change.level);
      this.#irqs.emit('irq', change);
      return;
    }
    const pending = this.#pending.shift();
    if (!pending) {
      this.#fail(new QemuPeerError(`qtest: an answer nobody asked for: '${line}'`));
      return;
    }
    pending.resolve(words);
  }

  #fail(e: Error): void {
    this.#closed ??= e;
    for (const p of this.#pending.splice(0)) p.reject(new QemuPeerError(`qtest '${p.command.slice(0, 60)}': ${e.message}`));
    this.#socket.destroy();
  }
}
