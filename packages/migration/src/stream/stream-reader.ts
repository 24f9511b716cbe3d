// The reading side of a migration stream (QEMU's QEMUFile get side plus the checks of
// ram_load/qemu_loadvm_state): the preamble, then one validated record at a time, its payload
// left as views of the transport's chunks.

import { GuestMemory } from '@vmmkit/core';
import type { MigrationTransport } from './migration-transport.js';
import { ramView } from './ram-view.js';
import { checkFields, checkHeader, checkPreamble, checkRamRun, decodeFields, decodeText } from './record-codec.js';
import { layoutByType, PREAMBLE_SIZE, RECORD_HEADER_SIZE, type RecordNameOf, type StreamDirection, type StreamRecord } from './records.js';
import { MigrationStreamError } from './stream-errors.js';

// The largest header plus fixed fields of any record (COMPLETE: 8 + 24).
const SCRATCH = 64;

/** The shape of guest RAM a reader checks RAM runs against (a `GuestMemory` is one). */
export interface RamLayout {
  readonly blocks: readonly { readonly pages: number }[];
}

/** Options of a {@link MigrationStreamReader}. */
export interface StreamReaderOptions {
  /** Which records to expect: `forward` (at the destination, default) or `return` (at the source). */
  readonly direction?: StreamDirection;
  /**
   * The destination's guest RAM: a RAM run outside it is refused as it is read. When it is a
   * `GuestMemory`, RAM_PAGES data is received in place (see `inPlace`).
   */
  readonly memory?: RamLayout | GuestMemory;
  /**
   * Receive RAM_PAGES data straight into `memory` (a `GuestMemory`) as the record is read: by the
   * kernel where the transport can (`readInto`), else copied once from the received chunks. The
   * record's `parts` are then views of those guest pages, which `applyRamRecord` recognises and
   * does not copy again. Default: true when `memory` is a `GuestMemory`.
   */
  readonly inPlace?: boolean;
}

/**
 * Reads a migration stream and validates every record: an unknown type, nonzero flags or reserved
 * bytes, a body length wrong for the type, a count out of range, a RAM run outside `memory`, a
 * payload that is not the text it should be, or a stream that ends inside a record, each rejects
 * with a `MigrationStreamError` naming the record type and its stream offset. After an error the
 * reader rejects every later call with the same error.
 */
export class MigrationStreamReader<D extends StreamDirection = 'forward'> {
  readonly direction: D;
  readonly #transport: MigrationTransport;
  readonly #memory: RamLayout | undefined;
  /** Where RAM_PAGES data is received in place, if it is. */
  readonly #ram: GuestMemory | undefined;
  /** Received chunks; #chunks[#head] is read from #pos on. */
  #chunks: Uint8Array[] = [];
  #head = 0;
  #pos = 0;
  #buffered = 0;
  #offset = 0;
  #eof = false;
  #started: Promise<void> | undefined;
  #failed: unknown;
  readonly #scratch = new Uint8Array(SCRATCH);
  readonly #view = new DataView(this.#scratch.buffer);
  readonly #readRecord = (): Promise<StreamRecord<RecordNameOf<D>> | undefined> => this.#read();

  constructor(transport: MigrationTransport, options: StreamReaderOptions & { direction?: D } = {}) {
    this.#transport = transport;
    this.direction = options.direction ?? ('forward' as D);
    const memory = options.memory;
    this.#memory = memory;
    this.#ram = memory instanceof GuestMemory && options.inPlace !== false ? memory : undefined;
  }

  /** The transport the stream comes from. */
  get transport(): MigrationTransport {
    return this.#transport;
  }

  /** Stream bytes consumed so far (preamble included): the offset of the next record. */
  get bytesRead(): number {
    return this.#offset;
  }

  /** Read and check the preamble (`next()` does so first by itself). */
  start(): Promise<void> {
    this.#started ??= this.#guard(async () => {
      if (!(await this.#fill(PREAMBLE_SIZE))) {
        throw new MigrationStreamError('truncated', 'preamble', 0, `stream ended after ${this.#buffered} of ${PREAMBLE_SIZE} bytes`);
      }
      this.#peek(PREAMBLE_SIZE);
      checkPreamble(this.#scratch);
      this.#skip(PREAMBLE_SIZE);
    });
    return this.#started;
  }

  /**
   * The next record, or `undefined` when the stream ended at a record boundary. Whether that end
   * was expected (after COMPLETE and GO, or LOADED) is for the caller to judge. A payload's parts
   * stay valid after later calls (they are views of chunks the reader does not reuse).
   */
  async next(): Promise<StreamRecord<RecordNameOf<D>> | undefined> {
    await this.start();
    return this.#guard(this.#readRecord);
  }

  /**
   * The next record, where the stream must not end: an end here (a peer that closed early, as a
   * Unix socket shows a destroyed peer) is refused as `truncated`.
   */
  async expectNext(): Promise<StreamRecord<RecordNameOf<D>>> {
    const record = await this.next();
    if (record) return record;
    const error = new MigrationStreamError('truncated', 'end of stream', this.#offset, 'stream ended where a record was expected');
    this.#failed ??= error;
    throw error;
  }

  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#failed !== undefined) throw this.#failed;
    try {
      return await fn();
    } catch (e) {
      this.#failed = e;
      throw e;
    }
  }

  async #read(): Promise<StreamRecord<RecordNameOf<D>> | undefined> {
    // Each step awaits the transport only when its bytes are not buffered yet.
    if (this.#buffered < 1 && !(await this.#fill(1))) return undefined;
    const offset = this.#offset;
    if (this.#buffered < RECORD_HEADER_SIZE) await this.#need(RECORD_HEADER_SIZE, offset);
    this.#peek(RECORD_HEADER_SIZE);
    const { layout, length } = checkHeader(this.#view, 0, offset, this.direction);
    const head = RECORD_HEADER_SIZE + layout.fixed;
    if (this.#buffered < head) await this.#need(head, offset);
    this.#peek(head);
    const values = decodeFields(layout, this.#view, RECORD_HEADER_SIZE, offset);
    checkFields(layout, values, length, offset);
    if (layout.spec.count && this.#memory) checkRamRun(this.#memory.blocks, layout.name, values as { block: number; first: number; count: number }, offset);
    let parts: readonly Uint8Array[];
    if (this.#ram && layout.spec.payload?.kind === 'pages') {
      const run = values as { block: number; first: number; count: number };
      const target = ramView(this.#ram.blocks[run.block]!, run.first, run.count);
      this.#skip(head);
      await this.#receiveInto(target, offset, head);
      parts = [target];
    } else {
      if (this.#buffered < RECORD_HEADER_SIZE + length) await this.#need(RECORD_HEADER_SIZE + length, offset);
      this.#skip(head);
      parts = length > layout.fixed ? this.#take(length - layout.fixed) : NO_PARTS;
    }
    const record = new ReceivedRecord(layout.name, layout.spec.type, offset, RECORD_HEADER_SIZE + length, parts);
    Object.assign(record, values);
    const kind = layout.spec.payload?.kind;
    if (kind === 'utf8' || kind === 'json') Object.assign(record, decodeText(layout, record.payload, offset));
    return record as unknown as StreamRecord<RecordNameOf<D>>;
  }

  /**
   * Fill `target` with the next bytes of the stream (the payload of the record at `offset`, whose
   * first `head` bytes are consumed): first what is buffered here, then straight from the
   * transport.
   */
  async #receiveInto(target: Uint8Array, offset: number, head: number): Promise<void> {
    let done = 0;
    while (done < target.byteLength && this.#buffered > 0) {
      const chunk = this.#chunks[this.#head]!;
      const n = Math.min(target.byteLength - done, chunk.byteLength - this.#pos);
      target.set(chunk.subarray(this.#pos, this.#pos + n), done);
      this.#skip(n);
      done += n;
    }
    if (done < target.byteLength && !this.#eof && this.#transport.readInto) {
      const n = await this.#transport.readInto(target.subarray(done));
      this.#offset += n;
      done += n;
      if (done < target.byteLength) this.#eof = true;
    }
    while (done < target.byteLength && (await this.#fill(1))) {
      const n = Math.min(target.byteLength - done, this.#buffered);
      const parts = this.#take(n);
      for (const p of parts) (target.set(p, done), (done += p.byteLength));
    }
    if (done < target.byteLength) {
      throw new MigrationStreamError('truncated', 'RAM_PAGES', offset, `stream ended after ${head + done} of the record's ${head + target.byteLength} bytes`);
    }
  }

  /** Buffer `bytes` bytes of the record at `offset`, or refuse the stream as truncated. */
  async #need(bytes: number, offset: number): Promise<void> {
    if (await this.#fill(bytes)) return;
    const type = this.#chunks[this.#head]![this.#pos]!;
    const name = layoutByType(type, this.direction)?.name ?? `type 0x${type.toString(16).padStart(2, '0')}`;
    throw new MigrationStreamError('truncated', name, offset, `stream ended after ${this.#buffered} of the record's ${bytes} bytes`);
  }

  /** Whether `bytes` bytes are buffered, reading from the transport until they are or it ends. */
  async #fill(bytes: number): Promise<boolean> {
    while (this.#buffered < bytes) {
      if (this.#eof) return false;
      const chunk = await this.#transport.read();
      if (chunk === undefined) this.#eof = true;
      else if (chunk.byteLength > 0) {
        this.#chunks.push(chunk);
        this.#buffered += chunk.byteLength;
      }
    }
    return true;
  }

  /** Copy the next `bytes` buffered bytes into the scratch area without consuming them. */
  #peek(bytes: number): void {
    let copied = 0;
    for (let i = this.#head, pos = this.#pos; copied < bytes; i++, pos = 0) {
      const chunk = this.#chunks[i]!;
      const n = Math.min(bytes - copied, chunk.byteLength - pos);
      for (let k = 0; k < n; k++) this.#scratch[copied + k] = chunk[pos + k]!;
      copied += n;
    }
  }

  /** Consume `bytes` buffered bytes. */
  #skip(bytes: number): void {
    this.#consume(bytes, undefined);
  }

  /** Consume `bytes` buffered bytes, returned as views of the chunks they lie in. */
  #take(bytes: number): Uint8Array[] {
    const parts: Uint8Array[] = [];
    this.#consume(bytes, parts);
    return parts;
  }

  #consume(bytes: number, parts: Uint8Array[] | undefined): void {
    this.#buffered -= bytes;
    this.#offset += bytes;
    while (bytes > 0) {
      const chunk = this.#chunks[this.#head]!;
      const n = Math.min(bytes, chunk.byteLength - this.#pos);
      parts?.push(n === chunk.byteLength ? chunk : chunk.subarray(this.#pos, this.#pos + n));
      bytes -= n;
      this.#pos += n;
      if (this.#pos === chunk.byteLength) {
        this.#head++;
        this.#pos = 0;
      }
    }
    if (this.#head > 32 && this.#head * 2 > this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
  }
}

const NO_PARTS: readonly Uint8Array[] = [];
const EMPTY = new Uint8Array(0);

/** A record as the reader builds it: metadata, decoded fields (assigned on), payload parts. */
class ReceivedRecord {
  #payload: Uint8Array | undefined;

  constructor(
    readonly name: string,
    readonly type: number,
    readonly offset: number,
    readonly size: number,
    readonly parts: readonly Uint8Array[],
  ) {}

  get payload(): Uint8Array {
    if (this.#payload) return this.#payload;
    if (this.parts.length <= 1) return (this.#payload = this.parts[0] ?? EMPTY);
    const whole = new Uint8Array(this.parts.reduce((n, p) => n + p.byteLength, 0));
    let at = 0;
    for (const p of this.parts) {
      whole.set(p, at);
      at += p.byteLength;
    }
    return (this.#payload = whole);
  }
}
