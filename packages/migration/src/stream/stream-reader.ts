// The reading side of a migration stream (QEMU's QEMUFile get side plus the checks of
// ram_load/qemu_loadvm_state): the preamble, then one validated record at a time, its payload
// left as views of the transport's chunks, each pass checked against its checksum.

import { GuestMemory } from '@vmmkit/core';
import { IdleWatch } from './idle-watch.js';
import type { MigrationTransport } from './migration-transport.js';
import { ramView } from './ram-view.js';
import { checkFields, checkHeader, checkPreamble, checkRamRun, decodeFields, decodeText, type FieldValues } from './record-codec.js';
import {
  layoutByType, MAX_DATA_PAGES, PAGE_DIGEST_BYTES, PREAMBLE_SIZE, RECORD_HEADER_SIZE, STREAM_PAGE_SIZE, type RecordLayout, type RecordNameOf, type StreamDirection,
  type StreamRecord,
} from './records.js';
import { concat, ReceivedRecord } from './received-record.js';
import { digestPages, PassChecksum } from './stream-checksums.js';
import { MigrationStreamError, MigrationTimeoutError } from '../migration-errors.js';

// Room for the largest header plus fixed fields of any record (COMPLETE: 8 + 28).
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
  /**
   * Refuse a peer that sends nothing for this long (ms) while the reader waits for bytes: the
   * call rejects with `MigrationTimeoutError`. Time the reader's owner spends between calls does
   * not count. Default: none (0 and Infinity also mean none).
   */
  readonly idleTimeoutMs?: number;
}

type RamRun = { block: number; first: number; count: number };

/**
 * Reads a migration stream and validates every record: an unknown type, nonzero flags or reserved
 * bytes, a body length wrong for the type, a count out of range, a RAM run outside `memory`, a
 * payload that is not the text it should be, a pass whose checksum does not match, or a stream
 * that ends inside a record, each rejects with a `MigrationStreamError` naming the record type and
 * its stream offset. After an error the reader rejects every later call with the same error.
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
  /** The pass checksum so far, when the stream carries checksums (known after the preamble). */
  #pass: PassChecksum | undefined;
  /** Where the current pass began, for messages. */
  #passStart = 0;
  #digests = new Uint32Array(MAX_DATA_PAGES);
  readonly #idle: IdleWatch | undefined;
  /** The record being read, for the idle timeout's message. */
  #inside: { name: string; offset: number } | undefined;
  readonly #scratch = new Uint8Array(SCRATCH);
  readonly #view = new DataView(this.#scratch.buffer);
  readonly #readRecord = (): Promise<StreamRecord<RecordNameOf<D>> | undefined> => this.#read();

  constructor(transport: MigrationTransport, options: StreamReaderOptions & { direction?: D } = {}) {
    this.#transport = transport;
    this.direction = options.direction ?? ('forward' as D);
    const memory = options.memory;
    this.#memory = memory;
    this.#ram = memory instanceof GuestMemory && options.inPlace !== false ? memory : undefined;
    const idle = options.idleTimeoutMs;
    if (idle !== undefined && idle > 0 && idle !== Infinity) {
      const at = (): number => transport.bytesReceived ?? this.#offset + this.#buffered;
      this.#idle = new IdleWatch(idle, transport, (quiet) => new MigrationTimeoutError(transport.name, idle, quiet, at(), this.#inside));
    }
  }

  /** Whether the stream carries checksums (false until the preamble is read). */
  get checksums(): boolean {
    return this.#pass !== undefined;
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
      if (checkPreamble(this.#scratch).checksums) {
        this.#pass = new PassChecksum();
        this.#pass.update(this.#scratch.subarray(0, PREAMBLE_SIZE));
      }
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

  /**
   * Whether the stream ends here, at a record boundary, without reading anything that follows as
   * a record (nothing is received into guest RAM): false as soon as a byte more arrives.
   */
  async atEnd(): Promise<boolean> {
    await this.start();
    return this.#guard(async () => this.#buffered === 0 && !(await this.#fill(1)));
  }

  /** Stop the idle timeout's timer: the owner reads no more (a failed reader stops by itself). */
  stop(): void {
    this.#idle?.stop();
  }

  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#failed !== undefined) throw this.#failed;
    try {
      return await fn();
    } catch (e) {
      this.#failed = e;
      this.#idle?.stop();
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
    this.#inside = { name: layout.name, offset };
    const head = RECORD_HEADER_SIZE + layout.fixed;
    if (this.#buffered < head) await this.#need(head, offset);
    this.#peek(head);
    const values = decodeFields(layout, this.#view, RECORD_HEADER_SIZE, offset);
    checkFields(layout, values, length, offset, this.#pass !== undefined);
    if (layout.spec.count && this.#memory) checkRamRun(this.#memory.blocks, layout.name, values as RamRun, offset);
    this.#checkPass(layout, values, head, offset);
    const { parts, corruptPages } = layout.spec.payload?.kind === 'pages'
      ? await this.#pages(layout, values as RamRun, length, head, offset)
      : await this.#payload(layout, length, head, offset);
    this.#inside = undefined;
    const record = new ReceivedRecord(layout.name, layout.spec.type, offset, RECORD_HEADER_SIZE + length, parts);
    Object.assign(record, values);
    if (layout.checkpoint) delete (record as { checksum?: number }).checksum;
    if (corruptPages) Object.assign(record, { corruptPages });
    const kind = layout.spec.payload?.kind;
    if (kind === 'utf8' || kind === 'json') Object.assign(record, decodeText(layout, record.payload, offset));
    return record as unknown as StreamRecord<RecordNameOf<D>>;
  }

  /**
   * Add the record's header and fixed fields (in the scratch area) to the pass checksum; at a
   * checkpoint, compare the pass's CRC with its checksum field and start the next pass.
   */
  #checkPass({ name, checkpoint }: RecordLayout, values: FieldValues, head: number, offset: number): void {
    const pass = this.#pass;
    if (!checkpoint) {
      pass?.update(this.#scratch.subarray(0, head));
      return;
    }
    const sent = values['checksum'] as number;
    if (!pass) {
      if (sent !== 0) throw new MigrationStreamError('bad-checksum', name, offset, `checksum 0x${hex(sent)} in a stream without checksums`);
      return;
    }
    pass.update(this.#scratch.subarray(0, head - 4));
    if (pass.value !== sent) {
      throw new MigrationStreamError('bad-checksum', name, offset,
        `the pass from offset ${this.#passStart} has CRC-32 0x${hex(pass.value)}, the record says 0x${hex(sent)}: the stream was corrupted`);
    }
    pass.reset();
    this.#passStart = offset + head;
  }

  /** A payload other than pages: views of the buffered chunks, added to the pass checksum. */
  async #payload(layout: RecordLayout, length: number, head: number, offset: number): Promise<{ parts: readonly Uint8Array[]; corruptPages?: undefined }> {
    if (this.#buffered < RECORD_HEADER_SIZE + length) await this.#need(RECORD_HEADER_SIZE + length, offset);
    this.#skip(head);
    const parts = length > layout.fixed ? this.#take(length - layout.fixed) : NO_PARTS;
    if (this.#pass) for (const p of parts) this.#pass.update(p);
    return { parts };
  }

  /**
   * RAM_PAGES data: its page digests first (with checksums, added to the pass checksum), then the
   * pages, received in place where the reader has the guest memory; each page checked against its
   * digest.
   */
  async #pages(layout: RecordLayout, run: RamRun, length: number, head: number, offset: number): Promise<{ parts: readonly Uint8Array[]; corruptPages: number[] }> {
    const table = this.#pass ? run.count * PAGE_DIGEST_BYTES : 0;
    if (this.#buffered < head + table) await this.#need(head + table, offset, { size: RECORD_HEADER_SIZE + length });
    this.#skip(head);
    const digests = table > 0 ? this.#digestTable(run.count) : undefined;
    const bytes = run.count * STREAM_PAGE_SIZE;
    let parts: readonly Uint8Array[];
    if (this.#ram) {
      const target = ramView(this.#ram.blocks[run.block]!, run.first, run.count);
      await this.#receiveInto(target, offset, head + table);
      parts = [target];
    } else {
      if (this.#buffered < bytes) await this.#need(bytes, offset, { name: layout.name, consumed: head + table });
      parts = this.#take(bytes);
    }
    const corruptPages: number[] = [];
    if (digests) {
      const got = this.#digests.subarray(0, run.count);
      digestPages(parts, got);
      for (let i = 0; i < run.count; i++) if (got[i] !== digests.getUint32(i * PAGE_DIGEST_BYTES, true)) corruptPages.push(run.first + i);
    }
    return { parts, corruptPages };
  }

  /** Take the next `count` page digests (buffered), adding them to the pass checksum. */
  #digestTable(count: number): DataView {
    const parts = this.#take(count * PAGE_DIGEST_BYTES);
    const table = parts.length === 1 ? parts[0]! : concat(parts);
    this.#pass!.update(table);
    return new DataView(table.buffer, table.byteOffset, table.byteLength);
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
      const pending = this.#transport.readInto(target.subarray(done));
      const n = await (this.#idle ? this.#idle.wait(pending) : pending);
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

  /**
   * Buffer `bytes` more bytes of the record at `offset`, or refuse the stream as truncated. Once
   * `consumed` bytes of the record are consumed, its `name` must be given; `size` is the record's
   * size for the message (default: the bytes asked for).
   */
  async #need(bytes: number, offset: number, o: { name?: string; consumed?: number; size?: number } = {}): Promise<void> {
    if (await this.#fill(bytes)) return;
    const consumed = o.consumed ?? 0;
    let name = o.name;
    if (name === undefined) {
      const type = this.#chunks[this.#head]![this.#pos]!;
      name = layoutByType(type, this.direction)?.name ?? `type 0x${type.toString(16).padStart(2, '0')}`;
    }
    throw new MigrationStreamError('truncated', name, offset, `stream ended after ${consumed + this.#buffered} of the record's ${o.size ?? consumed + bytes} bytes`);
  }

  /** Whether `bytes` bytes are buffered, reading from the transport until they are or it ends. */
  async #fill(bytes: number): Promise<boolean> {
    while (this.#buffered < bytes) {
      if (this.#eof) return false;
      const pending = this.#transport.read();
      const chunk = await (this.#idle ? this.#idle.wait(pending) : pending);
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

const hex = (n: number): string => n.toString(16).padStart(8, '0');
