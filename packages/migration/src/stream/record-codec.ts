// Encoding and validation of the preamble and record framing, driven by the RECORDS table. The
// reader and the writer share every check, so a record the writer lets out is one the reader takes.

import {
  layoutByType, PAGE_DIGEST_BYTES, PREAMBLE_SIZE, RECORD_HEADER_SIZE, STREAM_CHECKSUMS, STREAM_MAGIC, STREAM_PAGE_SIZE, STREAM_VERSION,
  type RecordLayout, type StreamDirection,
} from './records.js';
import { MigrationStreamError } from '../migration-errors.js';

const MAGIC = new TextEncoder().encode(STREAM_MAGIC);
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decoded field values by name (u32 as number, u64 as bigint). */
export type FieldValues = Record<string, number | bigint>;

/** The 16 bytes of a preamble of this version; `checksums` sets {@link STREAM_CHECKSUMS}. */
export function encodePreamble(checksums: boolean): Uint8Array {
  const bytes = new Uint8Array(PREAMBLE_SIZE);
  bytes.set(MAGIC);
  const view = new DataView(bytes.buffer);
  view.setUint16(8, STREAM_VERSION, true);
  view.setUint16(10, checksums ? STREAM_CHECKSUMS : 0, true);
  return bytes;
}

/**
 * Refuse a preamble with a wrong magic, an unknown version, an unknown flag or nonzero reserved
 * bytes. Returns whether the stream carries checksums.
 */
export function checkPreamble(bytes: Uint8Array): { checksums: boolean } {
  const fail = (fault: 'bad-magic' | 'bad-version' | 'bad-preamble', detail: string): never => {
    throw new MigrationStreamError(fault, 'preamble', 0, detail);
  };
  if (MAGIC.some((b, i) => bytes[i] !== b)) fail('bad-magic', `magic ${JSON.stringify(String.fromCharCode(...bytes.subarray(0, 8)))} is not ${STREAM_MAGIC}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, PREAMBLE_SIZE);
  const version = view.getUint16(8, true);
  if (version !== STREAM_VERSION) fail('bad-version', `version ${version} is not supported (this reader knows ${STREAM_VERSION})`);
  const flags = view.getUint16(10, true);
  if ((flags & ~STREAM_CHECKSUMS) !== 0) fail('bad-preamble', `flags 0x${flags.toString(16)} have unknown bits (only 0x${STREAM_CHECKSUMS.toString(16)} is defined)`);
  if (view.getUint32(12, true) !== 0) fail('bad-preamble', 'reserved bytes are not zero');
  return { checksums: (flags & STREAM_CHECKSUMS) !== 0 };
}

/** Bytes of a RAM_PAGES payload of `count` pages: the pages, after their digests with checksums. */
export function pagesPayloadLength(count: number, checksums: boolean): number {
  return count * (STREAM_PAGE_SIZE + (checksums ? PAGE_DIGEST_BYTES : 0));
}

/**
 * Check the 8-byte header at `view[at]` of a record at stream `offset`: a type of `direction`,
 * zero flags and reserved bytes, and a body length its type allows. Returns the record's layout
 * and body length.
 */
export function checkHeader(view: DataView, at: number, offset: number, direction: StreamDirection): { layout: RecordLayout; length: number } {
  const type = view.getUint8(at);
  const layout = layoutByType(type, direction);
  if (!layout) {
    throw new MigrationStreamError('unknown-type', `type 0x${type.toString(16).padStart(2, '0')}`, offset, `unknown record type on the ${direction} stream`);
  }
  const flags = view.getUint8(at + 1);
  if (flags !== 0) throw new MigrationStreamError('nonzero-flags', layout.name, offset, `flags 0x${flags.toString(16)} are not zero`);
  if (view.getUint16(at + 2, true) !== 0) throw new MigrationStreamError('nonzero-reserved', layout.name, offset, 'header reserved bytes are not zero');
  const length = view.getUint32(at + 4, true);
  checkBodyLength(layout, length, offset);
  return { layout, length };
}

/**
 * Whether `length` is a body length the record may have. For RAM_PAGES only that it holds the
 * fixed fields: its count is checked first, then the exact length (see {@link checkFields}).
 */
export function checkBodyLength({ name, spec, fixed }: RecordLayout, length: number, offset: number): void {
  const pages = spec.payload?.kind === 'pages';
  const min = fixed + (pages ? 0 : (spec.payload?.min ?? 0));
  const max = fixed + (spec.payload?.max ?? 0);
  if (length < min || (!pages && length > max)) {
    const allowed = min === max ? `${min}` : `${min}..${max}`;
    throw new MigrationStreamError('bad-length', name, offset, `body length ${length} is not ${allowed}`);
  }
}

/** Decode the fixed fields at `view[at]` (a checksum as a u32), refusing nonzero reserved fields. */
export function decodeFields({ name, fields }: RecordLayout, view: DataView, at: number, offset: number): FieldValues {
  const values: FieldValues = {};
  for (const [field, type] of fields) {
    if (type === 'u64') {
      values[field] = view.getBigUint64(at, true);
      at += 8;
      continue;
    }
    const value = view.getUint32(at, true);
    at += 4;
    if (type === 'u32' || type === 'crc32') values[field] = value;
    else if (value !== 0) throw new MigrationStreamError('nonzero-reserved', name, offset, `reserved field ${field} is 0x${value.toString(16)}, not zero`);
  }
  return values;
}

/**
 * Check field values against the table: `count` in range, and a RAM_PAGES body of exactly count
 * pages (after their digests, with `checksums`).
 */
export function checkFields({ name, spec, fixed }: RecordLayout, values: FieldValues, length: number, offset: number, checksums: boolean): void {
  if (!spec.count) return;
  const count = values['count'] as number;
  const [min, max] = spec.count;
  if (!(count >= min && count <= max)) throw new MigrationStreamError('bad-count', name, offset, `count ${count} is outside ${min}..${max}`);
  if (spec.payload?.kind === 'pages' && length !== fixed + pagesPayloadLength(count, checksums)) {
    const digests = checksums ? ` with their ${PAGE_DIGEST_BYTES}-byte digests` : '';
    throw new MigrationStreamError('bad-length', name, offset, `body length ${length} is not ${fixed} + ${count} pages of ${STREAM_PAGE_SIZE}${digests}`);
  }
}

/** Field values a writer is given must fit their wire types (a bug otherwise, so a RangeError). */
export function checkValues({ name, fields }: RecordLayout, values: Readonly<Record<string, unknown>>, offset: number): void {
  for (const [field, type] of fields) {
    const v = values[field];
    const ok =
      type === 'reserved32' || type === 'crc32' ? true
      : type === 'u32' ? typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff
      : typeof v === 'bigint' && v >= 0n && v < 1n << 64n;
    if (!ok) throw new MigrationStreamError('bad-count', name, offset, `field ${field} = ${String(v)} is not a ${type}`);
  }
}

/**
 * Write the header and fixed fields of a record into `view[at]` (a checksum as zero: the writer
 * fills it in); returns the bytes written.
 */
export function encodeHead({ spec, fields }: RecordLayout, values: Readonly<Record<string, unknown>>, length: number, view: DataView, at: number): number {
  view.setUint8(at, spec.type);
  view.setUint8(at + 1, 0);
  view.setUint16(at + 2, 0, true);
  view.setUint32(at + 4, length, true);
  let p = at + RECORD_HEADER_SIZE;
  for (const [field, type] of fields) {
    if (type === 'u64') {
      view.setBigUint64(p, values[field] as bigint, true);
      p += 8;
    } else {
      view.setUint32(p, type === 'u32' ? (values[field] as number) : 0, true);
      p += 4;
    }
  }
  return p - at;
}

/** Decode a text payload (strict UTF-8) and, for `json`, parse it. */
export function decodeText({ name, spec }: RecordLayout, bytes: Uint8Array, offset: number): { text: string; json?: unknown } {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch (e) {
    throw new MigrationStreamError('bad-payload', name, offset, 'payload is not valid UTF-8', { cause: e });
  }
  if (spec.payload?.kind !== 'json') return { text };
  try {
    return { text, json: JSON.parse(text) };
  } catch (e) {
    throw new MigrationStreamError('bad-payload', name, offset, `payload is not JSON: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Check a RAM run against the destination's RAM blocks (pages per block): the block exists and
 * [first, first + count) lies inside it.
 */
export function checkRamRun(blocks: readonly { readonly pages: number }[], name: string, run: { block: number; first: number; count: number }, offset: number): void {
  const block = blocks[run.block];
  if (!block) throw new MigrationStreamError('outside-ram', name, offset, `RAM block ${run.block} does not exist (the destination has ${blocks.length})`);
  if (run.first + run.count > block.pages) {
    throw new MigrationStreamError('outside-ram', name, offset, `pages ${run.first}..${run.first + run.count - 1} are outside RAM block ${run.block} of ${block.pages} pages`);
  }
}
