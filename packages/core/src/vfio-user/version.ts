// VFIO_USER_VERSION: the major/minor version and the JSON capabilities both sides send, with the
// specification's defaults for absent fields and the negotiation rule a server applies.

import {
  VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE, VFIO_USER_DEFAULT_MAX_DMA_MAPS, VFIO_USER_DEFAULT_MAX_MSG_FDS,
  VFIO_USER_DEFAULT_PGSIZES, VFIO_USER_FD_LIMIT, VFIO_USER_VERSION,
} from './constants.js';
import { PayloadReader, PayloadWriter, expectFds } from './payload.js';

/** The capabilities object of the version JSON, with every field resolved to its value. */
export interface VfioUserCapabilities {
  /** Most fds the sender accepts in one message (default 1). */
  readonly maxMsgFds: number;
  /** Largest `count` of a data transfer message the sender accepts (default 1 MiB). */
  readonly maxDataXferSize: number;
  /** Most DMA windows valid at once (default 65535). */
  readonly maxDmaMaps: number;
  /** DMA page sizes or'ed together (default 4096). */
  readonly pgsizes: bigint;
  /** Migration capability as QEMU sends it (`{"pgsize":..,"max_bitmap_size":..}`), if present. */
  readonly migration?: { readonly pgsize: bigint; readonly maxBitmapSize: bigint };
  /** REGION_WRITE_MULTI is accepted. */
  readonly writeMultiple: boolean;
  /** Twin-socket mode offered (never enabled by this implementation). */
  readonly twinSocket: boolean;
}

/** A VERSION request or reply. */
export interface VfioUserVersion {
  readonly major: number;
  readonly minor: number;
  readonly capabilities: VfioUserCapabilities;
}

/** What an absent capabilities object means. */
export const DEFAULT_CAPABILITIES: VfioUserCapabilities = Object.freeze({
  maxMsgFds: VFIO_USER_DEFAULT_MAX_MSG_FDS, maxDataXferSize: VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE,
  maxDmaMaps: VFIO_USER_DEFAULT_MAX_DMA_MAPS, pgsizes: BigInt(VFIO_USER_DEFAULT_PGSIZES), writeMultiple: false, twinSocket: false,
});

/** Most JSON bytes accepted in a VERSION message: far above what any peer sends. */
const MAX_JSON = 4096;

/** Decode a VERSION payload (request or reply); no fds may come with it. */
export function decodeVersion(payload: Uint8Array, fds: readonly number[]): VfioUserVersion {
  const r = new PayloadReader(VFIO_USER_VERSION, payload);
  expectFds(VFIO_USER_VERSION, fds, [0], 'a version message carries none');
  r.need(4, 'the version numbers');
  let json = payload.subarray(4);
  if (json.byteLength > MAX_JSON) r.fail(`version data of ${json.byteLength} bytes exceeds ${MAX_JSON}`, 'E2BIG');
  // The data is NUL-terminated when present; take what comes before the NUL.
  const nul = json.indexOf(0);
  if (nul >= 0) {
    if (json.subarray(nul).some((b) => b !== 0)) r.fail('bytes follow the NUL that ends the version data');
    json = json.subarray(0, nul);
  }
  const capabilities = json.byteLength === 0 ? DEFAULT_CAPABILITIES : parseCapabilities(r, json);
  return { major: r.u16(0), minor: r.u16(2), capabilities };
}

function parseCapabilities(r: PayloadReader, json: Uint8Array): VfioUserCapabilities {
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch {
    return r.fail('version data is not UTF-8 JSON');
  }
  if (!isObject(doc)) return r.fail('version data is not a JSON object');
  const caps = doc['capabilities'];
  if (caps === undefined) return DEFAULT_CAPABILITIES;
  if (!isObject(caps)) return r.fail('"capabilities" is not an object');
  const count = (key: string, fallback: number, max: number): number => {
    const v = caps[key];
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) r.fail(`capability "${key}" is not an integer in [0, ${max}]`);
    return v;
  };
  const migration = caps['migration'];
  if (migration !== undefined && !isObject(migration)) r.fail('capability "migration" is not an object');
  const twin = caps['twin_socket'];
  if (twin !== undefined && !isObject(twin)) r.fail('capability "twin_socket" is not an object');
  const write = caps['write_multiple'];
  if (write !== undefined && typeof write !== 'boolean') r.fail('capability "write_multiple" is not a boolean');
  return {
    maxMsgFds: count('max_msg_fds', VFIO_USER_DEFAULT_MAX_MSG_FDS, VFIO_USER_FD_LIMIT),
    maxDataXferSize: count('max_data_xfer_size', VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE, 2 ** 31),
    maxDmaMaps: count('max_dma_maps', VFIO_USER_DEFAULT_MAX_DMA_MAPS, 2 ** 31),
    pgsizes: BigInt(count('pgsizes', VFIO_USER_DEFAULT_PGSIZES, Number.MAX_SAFE_INTEGER)),
    ...(migration ? { migration: {
      pgsize: BigInt(numberIn(r, migration, 'pgsize', 4096)), maxBitmapSize: BigInt(numberIn(r, migration, 'max_bitmap_size', 0)),
    } } : {}),
    writeMultiple: write === true,
    twinSocket: twin !== undefined && (twin as Record<string, unknown>)['supported'] === true,
  };
}

function numberIn(r: PayloadReader, o: Record<string, unknown>, key: string, fallback: number): number {
  const v = o[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) r.fail(`capability "migration.${key}" is not a non-negative integer`);
  return v;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Encode a VERSION payload with its capabilities JSON (NUL-terminated). */
export function encodeVersion(v: VfioUserVersion): Uint8Array {
  const c = v.capabilities;
  const caps: Record<string, unknown> = {
    max_msg_fds: c.maxMsgFds, max_data_xfer_size: c.maxDataXferSize, max_dma_maps: c.maxDmaMaps, pgsizes: Number(c.pgsizes),
  };
  if (c.migration) caps['migration'] = { pgsize: Number(c.migration.pgsize), max_bitmap_size: Number(c.migration.maxBitmapSize) };
  if (c.writeMultiple) caps['write_multiple'] = true;
  const json = new TextEncoder().encode(JSON.stringify({ capabilities: caps }));
  return new PayloadWriter(4 + json.byteLength + 1).u16(0, v.major).u16(2, v.minor).set(4, json).bytes;
}

/**
 * The server's side of the negotiation: the same major (undefined when the server does not speak
 * it: it closes the connection), the lower minor, and capabilities no larger than either side's.
 */
export function negotiateVersion(client: VfioUserVersion, server: VfioUserVersion): VfioUserVersion | undefined {
  if (client.major !== server.major) return undefined;
  const a = client.capabilities;
  const b = server.capabilities;
  return {
    major: server.major, minor: Math.min(client.minor, server.minor),
    capabilities: {
      maxMsgFds: b.maxMsgFds, maxDataXferSize: Math.min(a.maxDataXferSize, b.maxDataXferSize),
      maxDmaMaps: Math.min(a.maxDmaMaps, b.maxDmaMaps), pgsizes: a.pgsizes & b.pgsizes,
      // QEMU refuses a reply whose max_bitmap_size exceeds its own: migration limits only go down.
      ...(a.migration && b.migration ? { migration: {
        pgsize: a.migration.pgsize > b.migration.pgsize ? a.migration.pgsize : b.migration.pgsize,
        maxBitmapSize: a.migration.maxBitmapSize < b.migration.maxBitmapSize ? a.migration.maxBitmapSize : b.migration.maxBitmapSize,
      } } : {}),
      writeMultiple: a.writeMultiple && b.writeMultiple, twinSocket: false,
    },
  };
}
