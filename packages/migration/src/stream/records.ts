// The migration stream's wire format, version 2 (little-endian): the preamble and one declarative
// table of record types, from which the codec, the reader's validation and the record types derive.
// The analogue of QEMU's RAM_SAVE_FLAG_* / QEMU_VM_* section constants, but with a length per record
// and (new in version 2) end-to-end checksums.

const KiB = 1024;
const MiB = 1024 * KiB;

/** The 8 ASCII bytes that open each direction of a stream. */
export const STREAM_MAGIC = 'VMMKITMG';
/**
 * The one version this code reads and writes. Version 2 added checksums: the `checksum` field
 * that ends ITERATION and COMPLETE, and RAM_PAGES page digests (both only with
 * {@link STREAM_CHECKSUMS}).
 */
export const STREAM_VERSION = 2;
/** Preamble: magic[8], version u16, flags u16, reserved u32 (0). */
export const PREAMBLE_SIZE = 16;
/**
 * Preamble flag: the stream carries checksums. Each pass (the records up to and including an
 * ITERATION or COMPLETE) ends with the CRC-32 (zlib's) of every byte of it before the `checksum`
 * field, preamble included for the first, page data excepted; and each RAM_PAGES payload opens
 * with a u32 digest (`PageDigest`) of each of its pages. Without the flag the `checksum` fields are
 * zero and RAM_PAGES carries its pages alone. The only flag: any other bit is refused.
 */
export const STREAM_CHECKSUMS = 0x1;
/** Bytes of one page digest in a RAM_PAGES payload. */
export const PAGE_DIGEST_BYTES = 4;
/** Record header: type u8, flags u8 (0), reserved u16 (0), body length u32. */
export const RECORD_HEADER_SIZE = 8;
/** The page size of RAM records (the host page size vmmkit migrates at). */
export const STREAM_PAGE_SIZE = 4096;
/** Most pages one RAM_PAGES record carries (1 MiB of data). */
export const MAX_DATA_PAGES = 256;
/** Most pages one RAM_ZERO record covers (4 GiB of RAM). */
export const MAX_ZERO_PAGES = 1 << 20;

/**
 * Which way a record travels: `forward` from the source to the destination (the migration
 * stream), `return` from the destination back to the source (the return path).
 */
export type StreamDirection = 'forward' | 'return';

/**
 * A fixed field of a record body: `u32` and `u64` carry values, `reserved32` must be zero, and
 * `crc32` (a u32, always the last field) is the pass checksum the writer computes and the reader
 * checks (see {@link STREAM_CHECKSUMS}).
 */
export type FieldType = 'u32' | 'u64' | 'reserved32' | 'crc32';

/** The variable tail of a record body, after its fixed fields. */
export interface PayloadSpec {
  /**
   * `binary` bytes, `utf8` text, `json` (UTF-8 JSON text), or `pages`: `count` × 4096 bytes, after
   * `count` page digests when the stream carries checksums.
   */
  readonly kind: 'binary' | 'utf8' | 'json' | 'pages';
  /** Smallest and largest payload length in bytes (for `pages`, implied by `count`). */
  readonly min: number;
  readonly max: number;
}

/** One record type. */
export interface RecordSpec {
  /** The type byte on the wire. */
  readonly type: number;
  readonly direction: StreamDirection;
  /** The fixed fields at the start of the body, in wire order. */
  readonly fields: Readonly<Record<string, FieldType>>;
  /** The allowed range of the `count` field, for records that have one. */
  readonly count?: readonly [min: number, max: number];
  /** The variable tail; records without one have exactly their fixed fields as body. */
  readonly payload?: PayloadSpec;
  /** A control record: the writer hands it to the transport at once instead of batching it. */
  readonly flush?: boolean;
}

const RAM_RUN = { block: 'u32', first: 'u32', count: 'u32', reserved: 'reserved32' } as const;
const DEVICE = { device: 'u32' } as const;
const REASON = { kind: 'utf8', min: 0, max: 4 * KiB } as const;

/** Every record type of version 2. */
export const RECORDS = {
  SETUP: { type: 0x01, direction: 'forward', fields: {}, payload: { kind: 'json', min: 1, max: MiB }, flush: true },
  RAM_PAGES: {
    type: 0x02, direction: 'forward', fields: RAM_RUN, count: [1, MAX_DATA_PAGES],
    payload: { kind: 'pages', min: STREAM_PAGE_SIZE, max: MAX_DATA_PAGES * STREAM_PAGE_SIZE },
  },
  RAM_ZERO: { type: 0x03, direction: 'forward', fields: RAM_RUN, count: [1, MAX_ZERO_PAGES] },
  DEVICE_DATA: { type: 0x04, direction: 'forward', fields: DEVICE, payload: { kind: 'binary', min: 1, max: MiB } },
  // A device's emulated state in one record: room for a KVM accelerator's of 1024 vCPUs (about
  // 9.4 KiB each with XSAVE), a bound the reader holds a hostile stream to.
  DEVICE_CONFIG: { type: 0x05, direction: 'forward', fields: DEVICE, payload: { kind: 'binary', min: 0, max: 16 * MiB } },
  DEVICE_END: { type: 0x06, direction: 'forward', fields: DEVICE },
  ITERATION: { type: 0x07, direction: 'forward', fields: { iteration: 'u32', reserved: 'reserved32', dirtyPages: 'u64', checksum: 'crc32' }, flush: true },
  COMPLETE: { type: 0x08, direction: 'forward', fields: { ramPages: 'u64', zeroPages: 'u64', deviceBytes: 'u64', checksum: 'crc32' }, flush: true },
  ABORT: { type: 0x09, direction: 'forward', fields: {}, payload: REASON, flush: true },
  GO: { type: 0x0a, direction: 'forward', fields: {}, flush: true },
  /**
   * The first record of a RAM channel (QEMU's multifd): which of the `channels` channels beside
   * the main stream this one is. A channel carries only RAM_PAGES, RAM_ZERO and SYNC after it.
   */
  CHANNEL: { type: 0x0b, direction: 'forward', fields: { channel: 'u32', channels: 'u32' }, flush: true },
  /**
   * The end of a pass on a RAM channel (QEMU's MULTIFD_FLAG_SYNC): the destination applies no
   * page of the next pass from any channel before every channel's SYNC of this one, so the newest
   * copy of a page wins whatever channel it came by. With checksums it ends the channel's pass.
   */
  SYNC: { type: 0x0c, direction: 'forward', fields: { pass: 'u32', reserved: 'reserved32', checksum: 'crc32' }, flush: true },
  READY: { type: 0x81, direction: 'return', fields: {}, flush: true },
  LOADED: { type: 0x82, direction: 'return', fields: {}, flush: true },
  ERROR: { type: 0x83, direction: 'return', fields: {}, payload: REASON, flush: true },
  /** After GO: the destination's devices run and its guest starts (the source may let go of its own). */
  STARTED: { type: 0x84, direction: 'return', fields: {}, flush: true },
} as const satisfies Record<string, RecordSpec>;

/** A record type's name: `'SETUP'`, `'RAM_PAGES'`, ... */
export type RecordName = keyof typeof RECORDS;
/** The names of the records that travel `D`. */
export type RecordNameOf<D extends StreamDirection> = { [N in RecordName]: (typeof RECORDS)[N]['direction'] extends D ? N : never }[RecordName];

/** The type byte of each record, by name (`RecordType.RAM_PAGES === 0x02`). */
export const RecordType = Object.fromEntries(Object.entries(RECORDS).map(([name, spec]) => [name, spec.type])) as {
  readonly [N in RecordName]: (typeof RECORDS)[N]['type'];
};

type Spec<N extends RecordName> = (typeof RECORDS)[N];
type FieldValue<T> = T extends 'u64' ? bigint : T extends 'u32' ? number : never;
type Payload<N extends RecordName> = Spec<N> extends { payload: { kind: infer K } } ? K : 'none';

/**
 * The value fields of record `N` (reserved fields are always zero, and checksums belong to the
 * writer and the reader: neither is a value).
 */
export type RecordFields<N extends RecordName> = {
  readonly [K in keyof Spec<N>['fields'] as Spec<N>['fields'][K] extends 'reserved32' | 'crc32' ? never : K]: FieldValue<Spec<N>['fields'][K]>;
};

/** What a writer needs for the payload of record `N`. */
export type PayloadInit<N extends RecordName> =
  Payload<N> extends 'json' ? { readonly json: unknown }
  : Payload<N> extends 'utf8' ? { readonly text: string }
  : Payload<N> extends 'binary' | 'pages' ? { readonly payload: Uint8Array | readonly Uint8Array[] }
  : unknown;

/** A record to write: its name, its fields and its payload, e.g. `{ name: 'DEVICE_END', device: 0 }`. */
export type RecordInit<N extends RecordName = RecordName> = N extends RecordName ? { readonly name: N } & RecordFields<N> & PayloadInit<N> : never;

/** What a reader returns for the payload of record `N`. */
export type PayloadRead<N extends RecordName> =
  Payload<N> extends 'json' ? { readonly json: unknown; readonly text: string }
  : Payload<N> extends 'utf8' ? { readonly text: string }
  : Payload<N> extends 'binary' | 'pages' ? {
    /**
     * The payload as received, in order: views of the transport's chunks (no copy). A payload
     * that arrived in one chunk is one part.
     */
    readonly parts: readonly Uint8Array[];
    /** The payload in one piece: a view when it is one part, else a copy made on first use. */
    readonly payload: Uint8Array;
  } & (N extends 'RAM_PAGES' ? {
    /**
     * The pages of the run (block page numbers) whose data did not match its digest; empty when
     * all matched or the stream has no checksums. Page data can change between the source's
     * digest and its send while the guest runs (such a page is dirty and is sent again), so a
     * mismatch is not an error by itself: the destination refuses only a page that no later copy
     * replaced.
     */
    readonly corruptPages: readonly number[];
  } : unknown)
  : unknown;

/** A record as read and validated, with where it stood in the stream. */
export type StreamRecord<N extends RecordName = RecordName> = N extends RecordName
  ? {
    readonly name: N;
    readonly type: Spec<N>['type'];
    /** The stream offset of the record's header. */
    readonly offset: number;
    /** Header plus body, in bytes. */
    readonly size: number;
  } & RecordFields<N> & PayloadRead<N>
  : never;

/** The two RAM records. */
export type RamRecord = StreamRecord<'RAM_PAGES' | 'RAM_ZERO'>;

/** The wire layout of a record type, computed once from its table entry. */
export interface RecordLayout {
  readonly name: RecordName;
  readonly spec: RecordSpec;
  /** The fixed fields in wire order. */
  readonly fields: readonly (readonly [name: string, type: FieldType])[];
  /** Their size in bytes. */
  readonly fixed: number;
  /** Whether the record ends a pass: its last field is the pass checksum. */
  readonly checkpoint: boolean;
}

/** The layout of a record type, by name. */
export function layoutOf(name: RecordName): RecordLayout {
  return LAYOUTS.get(name)!;
}

/** The layout for a type byte, if it is a record of `direction`. */
export function layoutByType(type: number, direction: StreamDirection): RecordLayout | undefined {
  return BY_TYPE[direction].get(type);
}

const LAYOUTS = new Map<RecordName, RecordLayout>();
const BY_TYPE: Record<StreamDirection, Map<number, RecordLayout>> = { forward: new Map(), return: new Map() };
for (const [name, spec] of Object.entries(RECORDS) as [RecordName, RecordSpec][]) {
  const fields = Object.entries(spec.fields);
  const fixed = fields.reduce((n, [, type]) => n + (type === 'u64' ? 8 : 4), 0);
  const checkpoint = fields.at(-1)?.[1] === 'crc32';
  const layout: RecordLayout = { name, spec, fields, fixed, checkpoint };
  LAYOUTS.set(name, layout);
  BY_TYPE[spec.direction].set(spec.type, layout);
}
