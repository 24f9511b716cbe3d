// The writing side of a migration stream (QEMU's QEMUFile put side): the preamble, then records,
// batched into slabs and handed to the transport with backpressure and optional bandwidth pacing,
// and checksummed as they are queued.

import { BandwidthPacer } from './bandwidth-pacer.js';
import type { MigrationTransport } from './migration-transport.js';
import { checkBodyLength, checkFields, checkValues, encodeHead, encodePreamble, type FieldValues } from './record-codec.js';
import { layoutOf, PAGE_DIGEST_BYTES, RECORD_HEADER_SIZE, STREAM_PAGE_SIZE, type RecordInit, type RecordNameOf, type RecordSpec, type StreamDirection } from './records.js';
import { digestPages, PassChecksum } from './stream-checksums.js';
import { MigrationStreamError } from '../migration-errors.js';

// Headers and payloads up to INLINE bytes are copied into a slab, so that small records go out
// as one buffer; larger payloads and all RAM page data are handed over as views, uncopied.
const INLINE = 1024;
const SLAB = 64 * 1024;
// Batched bytes that make the writer hand its queue to the transport without being asked.
const HANDOFF = 256 * 1024;
const utf8 = new TextEncoder();
const NONE: readonly Uint8Array[] = [];

/** Options of a {@link MigrationStreamWriter}. */
export interface StreamWriterOptions {
  /** Which records the writer sends: `forward` (the source, default) or `return` (the destination). */
  readonly direction?: StreamDirection;
  /** At most this many bytes per second go to the transport (QEMU's max-bandwidth); unlimited if absent. */
  readonly maxBandwidth?: number;
  /**
   * A pacer shared with other writers, instead of `maxBandwidth`: a migration's RAM channels and
   * its main stream share one limit.
   */
  readonly pacer?: BandwidthPacer;
  /**
   * Checksum the stream (`STREAM_CHECKSUMS`): a CRC-32 ends each pass and RAM pages carry
   * digests, so that the destination refuses a corrupted stream before the guest starts.
   * Default false. Only the forward stream checksums (the return path has no passes).
   */
  readonly checksums?: boolean;
}

/**
 * Writes a migration stream: the preamble (queued on construction), then records. Every record is
 * checked against the format before it is queued, so a bad one throws `MigrationStreamError` here
 * rather than at the destination. Control records (SETUP, ITERATION, COMPLETE, ...) go out at
 * once; others are batched until enough is queued or `flush()` is called.
 */
export class MigrationStreamWriter<D extends StreamDirection = 'forward'> {
  readonly direction: D;
  readonly #transport: MigrationTransport;
  readonly #pacer: BandwidthPacer | undefined;
  readonly #pass: PassChecksum | undefined;
  #digests = new Uint32Array(0);
  #slab = new Uint8Array(SLAB);
  #view = new DataView(this.#slab.buffer);
  /** The slab's bytes from #start to #pos are queued but not yet cut into #queue. */
  #start = 0;
  #pos = 0;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #written = 0;
  /** The chain of hand-offs, so that batches reach the transport in order. */
  #tail: Promise<void> = Promise.resolve();

  constructor(transport: MigrationTransport, options: StreamWriterOptions & { direction?: D } = {}) {
    this.#transport = transport;
    this.direction = options.direction ?? ('forward' as D);
    this.#pacer = options.pacer ?? (options.maxBandwidth === undefined ? undefined : new BandwidthPacer(options.maxBandwidth));
    const checksums = this.direction === 'forward' && options.checksums === true;
    this.#pass = checksums ? new PassChecksum() : undefined;
    const preamble = encodePreamble(checksums);
    this.#append(preamble);
    this.#pass?.update(preamble);
    this.#written = preamble.byteLength;
  }

  /** Whether the stream carries checksums. */
  get checksums(): boolean {
    return this.#pass !== undefined;
  }

  /** The transport the stream goes to. */
  get transport(): MigrationTransport {
    return this.#transport;
  }

  /** Bytes of the stream so far (preamble included), whether or not they have gone out yet. */
  get bytesWritten(): number {
    return this.#written;
  }

  /**
   * Queue a record, e.g. `write({ name: 'RAM_ZERO', block: 0, first: 16, count: 8 })`. A payload
   * given as views is sent from those views later: they must not change until `flush()` resolves.
   * Resolves when the writer can take more (the transport's backpressure and the bandwidth limit).
   * Rejects with MigrationStreamError for a record the format does not allow (nothing is queued
   * then), or with the transport's error once a hand-off has failed.
   */
  async write(record: RecordInit<RecordNameOf<D>>): Promise<void> {
    const layout = layoutOf(record.name);
    const { spec, fixed } = layout;
    const offset = this.#written;
    if (spec.direction !== this.direction) {
      throw new MigrationStreamError('unknown-type', record.name, offset, `is not a record of the ${this.direction} stream`);
    }
    const parts = payloadOf(spec, record);
    const pages = spec.payload?.kind === 'pages';
    let payloadLength = 0;
    for (const p of parts) payloadLength += p.byteLength;
    // Page digests go first in a RAM_PAGES payload, inline: the pages follow as views.
    const digests = this.#pass && pages ? (payloadLength / STREAM_PAGE_SIZE) * PAGE_DIGEST_BYTES : 0;
    const length = fixed + digests + payloadLength;
    checkBodyLength(layout, length, offset);
    checkValues(layout, record, offset);
    checkFields(layout, record as unknown as FieldValues, length, offset, this.#pass !== undefined);

    const inline = payloadLength <= INLINE && !pages;
    // A record whose payload goes out as views starts a chunk of its own: [header][payload...].
    if (!inline) this.#cut();
    this.#reserve(RECORD_HEADER_SIZE + fixed + digests + (inline ? payloadLength : 0));
    const start = this.#pos;
    this.#pos += encodeHead(layout, record, length, this.#view, this.#pos);
    if (digests > 0) this.#appendDigests(parts, digests / PAGE_DIGEST_BYTES);
    if (inline) for (const p of parts) this.#append(p);
    if (this.#pass) this.#checksum(layout.checkpoint, start, inline || pages ? NONE : parts);
    if (!inline) {
      this.#cut();
      for (const p of parts) this.#queue.push(p);
      this.#queued += payloadLength;
    }
    this.#written += RECORD_HEADER_SIZE + length;
    if (spec.flush || this.#queued + this.#pos - this.#start >= HANDOFF) return this.#handOff();
    return this.#tail;
  }

  /**
   * Add the record just encoded at slab[start..pos) and its `views` to the pass checksum; a
   * checkpoint record gets the pass's CRC in its last field, and the next pass starts.
   */
  #checksum(checkpoint: boolean, start: number, views: readonly Uint8Array[]): void {
    const pass = this.#pass!;
    if (!checkpoint) {
      pass.update(this.#slab.subarray(start, this.#pos));
      for (const v of views) pass.update(v);
      return;
    }
    pass.update(this.#slab.subarray(start, this.#pos - 4));
    this.#view.setUint32(this.#pos - 4, pass.value, true);
    pass.reset();
  }

  /** Write the digests of the `count` pages in `parts` into the slab. */
  #appendDigests(parts: readonly Uint8Array[], count: number): void {
    const digests = (this.#digests.length >= count ? this.#digests : (this.#digests = new Uint32Array(count))).subarray(0, count);
    digestPages(parts, digests);
    for (let i = 0; i < count; i++, this.#pos += PAGE_DIGEST_BYTES) this.#view.setUint32(this.#pos, digests[i]!, true);
  }

  /** Hand everything queued to the transport; resolves when the transport can take more. */
  flush(): Promise<void> {
    return this.#handOff();
  }

  /** Flush, then end this side of the transport (the reader sees the end of the stream). */
  async end(): Promise<void> {
    await this.#handOff();
    await this.#transport.end();
  }

  #handOff(): Promise<void> {
    this.#cut();
    const chunks = this.#queue;
    const bytes = this.#queued;
    if (chunks.length === 0) return this.#tail;
    this.#queue = [];
    this.#queued = 0;
    // A failed hand-off fails every later one with the same error: the chain stays rejected.
    this.#tail = this.#tail.then(async () => {
      await this.#transport.write(chunks);
      await this.#pacer?.pace(bytes);
    });
    return this.#tail;
  }

  /** Move the slab's uncut bytes to the queue (as a view: the slab is never written there again). */
  #cut(): void {
    if (this.#pos === this.#start) return;
    this.#queue.push(this.#slab.subarray(this.#start, this.#pos));
    this.#queued += this.#pos - this.#start;
    this.#start = this.#pos;
  }

  /** Make room for `bytes` in the slab, starting a new one (the old one is the transport's). */
  #reserve(bytes: number): void {
    if (this.#slab.byteLength - this.#pos >= bytes) return;
    this.#cut();
    this.#slab = new Uint8Array(Math.max(SLAB, bytes));
    this.#view = new DataView(this.#slab.buffer);
    this.#start = this.#pos = 0;
  }

  #append(bytes: Uint8Array): void {
    this.#reserve(bytes.byteLength);
    this.#slab.set(bytes, this.#pos);
    this.#pos += bytes.byteLength;
  }
}

/** The payload of an outgoing record as byte parts. */
function payloadOf(spec: RecordSpec, record: Readonly<Record<string, unknown>>): readonly Uint8Array[] {
  switch (spec.payload?.kind) {
    case undefined:
      return NONE;
    case 'json':
      return [utf8.encode(JSON.stringify(record['json']) ?? '')];
    case 'utf8':
      return [utf8.encode(String(record['text']))];
    default: {
      const payload = record['payload'] as Uint8Array | readonly Uint8Array[];
      return payload instanceof Uint8Array ? [payload] : payload;
    }
  }
}
