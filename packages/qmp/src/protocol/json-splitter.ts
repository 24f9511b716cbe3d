// Cutting a client's byte stream into JSON texts without trusting it (QEMU's json-streamer): it
// counts brackets outside strings and holds at most one message, so a client that sends garbage,
// nests without end or never finishes a huge message is found out after a bounded amount of work
// and memory, before anything is parsed.

import { genericError } from './qmp-error.js';

/** The splitter's bounds. */
export interface JsonSplitterLimits {
  /** The longest message, in bytes (default 1 MiB: a QMP command is a few hundred bytes). */
  readonly maxMessageBytes?: number;
  /** The deepest nesting of objects and arrays (default 1024, QEMU's MAX_NESTING). */
  readonly maxNesting?: number;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 1 << 20;
export const DEFAULT_MAX_NESTING = 1024;

const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

const isSpace = (b: number): boolean => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;

/** Splits a stream into the texts of top-level JSON objects (or arrays, which dispatch refuses). */
export class JsonSplitter {
  readonly #maxBytes: number;
  readonly #maxNesting: number;
  /** The unfinished message's pieces; empty between messages. */
  #pieces: Buffer[] = [];
  #length = 0;
  #depth = 0;
  #inString = false;
  #escaped = false;

  constructor(limits: JsonSplitterLimits = {}) {
    this.#maxBytes = limits.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.#maxNesting = limits.maxNesting ?? DEFAULT_MAX_NESTING;
  }

  /** Whether part of a message is buffered (a client closing now left half a message). */
  get pending(): boolean {
    return this.#depth > 0;
  }

  /**
   * Feed bytes; returns the complete messages they finish, in order.
   * @throws QmpError (GenericError) for bytes outside any object, a closing bracket without its
   *   opener, nesting or size beyond the limits. The stream cannot be resynchronised after that.
   */
  feed(chunk: Buffer): string[] {
    const messages: string[] = [];
    // A message that began in an earlier chunk goes on from this one's first byte.
    let start = this.#depth > 0 ? 0 : -1;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (this.#depth === 0) {
        if (isSpace(b)) continue;
        if (b !== OPEN_BRACE && b !== OPEN_BRACKET) throw genericError(`JSON parse error, invalid character 0x${b.toString(16).padStart(2, '0')} outside an object`);
        start = i;
      }
      if (this.#inString) {
        if (this.#escaped) this.#escaped = false;
        else if (b === BACKSLASH) this.#escaped = true;
        else if (b === QUOTE) this.#inString = false;
        continue;
      }
      if (b === QUOTE) this.#inString = true;
      else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
        if (++this.#depth > this.#maxNesting) throw genericError('JSON nesting depth limit exceeded');
      } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) {
        if (--this.#depth === 0) {
          messages.push(this.#take(chunk.subarray(start, i + 1)));
          start = -1;
        }
      }
    }
    if (start >= 0) this.#keep(chunk.subarray(start));
    return messages;
  }

  #keep(piece: Buffer): void {
    this.#length += piece.length;
    if (this.#length > this.#maxBytes) throw genericError(`JSON token size limit exceeded (a message is at most ${this.#maxBytes} bytes)`);
    // Copied: the caller's chunk may be reused.
    this.#pieces.push(Buffer.from(piece));
  }

  #take(last: Buffer): string {
    if (this.#length + last.length > this.#maxBytes) throw genericError(`JSON token size limit exceeded (a message is at most ${this.#maxBytes} bytes)`);
    const text = this.#pieces.length === 0 ? last.toString('utf8') : Buffer.concat([...this.#pieces, last]).toString('utf8');
    this.#pieces = [];
    this.#length = 0;
    return text;
  }
}
