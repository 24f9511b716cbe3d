// A vfio-user message as it travels: the 16-byte header, the payload and the file descriptors
// that came with it (SCM_RIGHTS); and the header's codec with its checks.

import {
  VFIO_USER_F_ERROR, VFIO_USER_F_KNOWN, VFIO_USER_F_NO_REPLY, VFIO_USER_F_TYPE_COMMAND, VFIO_USER_F_TYPE_MASK,
  VFIO_USER_F_TYPE_REPLY, VFIO_USER_HEADER_SIZE,
} from './constants.js';
import { VfioUserProtocolError } from './vfio-user-errors.js';

/** The header of a message (offsets 0, 2, 4, 8, 12). */
export interface VfioUserHeader {
  /** The sender's message id, echoed in the reply (16 bits). */
  readonly msgId: number;
  readonly command: number;
  /** The whole message's size, header included. */
  readonly size: number;
  readonly flags: number;
  /** The errno of an error reply; reserved (0) in a command. */
  readonly error: number;
}

/**
 * A whole message. `fds` are the descriptors that arrived with it: the receiver owns them and
 * must close every one it does not keep (see {@link VfioUserMessage.take}).
 */
export interface VfioUserMessage {
  readonly header: VfioUserHeader;
  /** The bytes after the header (`header.size - 16` of them). */
  readonly payload: Uint8Array;
  readonly fds: readonly number[];
}

/** Whether a message is a reply (type 1). */
export const isReply = (h: VfioUserHeader): boolean => (h.flags & VFIO_USER_F_TYPE_MASK) === VFIO_USER_F_TYPE_REPLY;
/** Whether a command asks for no reply. */
export const wantsNoReply = (h: VfioUserHeader): boolean => (h.flags & VFIO_USER_F_NO_REPLY) !== 0;
/** Whether a reply reports an error. */
export const isErrorReply = (h: VfioUserHeader): boolean => (h.flags & VFIO_USER_F_ERROR) !== 0;

/** Limits a receiver holds every incoming message to. */
export interface VfioUserLimits {
  /** Largest whole message accepted, in bytes. */
  readonly maxMessageSize: number;
  /** Most fds accepted with one message. */
  readonly maxFds: number;
}

/**
 * Decode and check a header: a size of at least 16 and at most `limits.maxMessageSize` (E2BIG),
 * a known type, no unknown flag bits, and NO_REPLY / ERROR only where they mean something.
 */
export function decodeHeader(bytes: Uint8Array, limits: VfioUserLimits): VfioUserHeader {
  if (bytes.byteLength < VFIO_USER_HEADER_SIZE) throw new VfioUserProtocolError('header', `${bytes.byteLength} bytes is shorter than a header`);
  return decodeHeaderAt(bytes, 0, limits);
}

/** {@link decodeHeader} of the 16 bytes at `at` of `bytes` (the caller checked they are there). */
export function decodeHeaderAt(bytes: Uint8Array, at: number, limits: VfioUserLimits): VfioUserHeader {
  // Byte by byte rather than through a DataView: a DataView over a small on-heap array moves it
  // off the heap, and this runs for every message.
  const header: VfioUserHeader = {
    msgId: bytes[at]! | (bytes[at + 1]! << 8), command: bytes[at + 2]! | (bytes[at + 3]! << 8), size: readU32(bytes, at + 4),
    flags: readU32(bytes, at + 8), error: readU32(bytes, at + 12),
  };
  if (header.size < VFIO_USER_HEADER_SIZE) throw new VfioUserProtocolError('header', `message size ${header.size} is smaller than the header`);
  if (header.size > limits.maxMessageSize) {
    throw new VfioUserProtocolError('header', `message size ${header.size} exceeds the limit of ${limits.maxMessageSize}`, 'E2BIG');
  }
  if ((header.flags & ~VFIO_USER_F_KNOWN) !== 0) throw new VfioUserProtocolError('header', `unknown flag bits 0x${(header.flags >>> 0).toString(16)}`);
  const type = header.flags & VFIO_USER_F_TYPE_MASK;
  if (type !== VFIO_USER_F_TYPE_COMMAND && type !== VFIO_USER_F_TYPE_REPLY) throw new VfioUserProtocolError('header', `message type ${type} is neither command nor reply`);
  if (type === VFIO_USER_F_TYPE_COMMAND && header.flags & VFIO_USER_F_ERROR) throw new VfioUserProtocolError('header', 'a command carries the error flag');
  if (type === VFIO_USER_F_TYPE_REPLY && header.flags & VFIO_USER_F_NO_REPLY) throw new VfioUserProtocolError('header', 'a reply carries the no-reply flag');
  return header;
}

const readU32 = (b: Uint8Array, at: number): number => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;

function writeU32(b: Uint8Array, at: number, v: number): void {
  b[at] = v;
  b[at + 1] = v >>> 8;
  b[at + 2] = v >>> 16;
  b[at + 3] = v >>> 24;
}

/** Encode a whole message: header fields (size computed) followed by `payload`. */
export function encodeMessage(header: Omit<VfioUserHeader, 'size'>, payload?: Uint8Array): Uint8Array {
  const out = new Uint8Array(VFIO_USER_HEADER_SIZE + (payload?.byteLength ?? 0));
  out[0] = header.msgId;
  out[1] = header.msgId >>> 8;
  out[2] = header.command;
  out[3] = header.command >>> 8;
  writeU32(out, 4, out.byteLength);
  writeU32(out, 8, header.flags);
  writeU32(out, 12, header.error);
  if (payload) out.set(payload, VFIO_USER_HEADER_SIZE);
  return out;
}

/** The header of the reply to `command`: same id and command, reply type, and the error if any. */
export function replyHeader(command: VfioUserHeader, errno?: number): Omit<VfioUserHeader, 'size'> {
  return {
    msgId: command.msgId, command: command.command,
    flags: VFIO_USER_F_TYPE_REPLY | (errno === undefined ? 0 : VFIO_USER_F_ERROR), error: errno ?? 0,
  };
}
