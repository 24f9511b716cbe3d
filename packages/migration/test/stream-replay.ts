// Recorded migration streams for the destination's tests: one real migration (a busy guest, a nic
// with migration data) recorded as it crosses a relay, its record boundaries, and replays of
// copies (whole, cut, held open, corrupted) into fresh destinations.

import type { Vmm } from '@vmmkit/core';
import { SimHost } from '@vmmkit/sim';
import { NIC_A, SimGuest, ramHash, simMachine } from '@vmmkit/sim/testing';
import {
  migrateIncoming, migrateOutgoing, PREAMBLE_SIZE, RECORD_HEADER_SIZE, RECORDS, transportPair, type IncomingOptions, type IncomingResult,
  type MigrationTransport, type RecordName,
} from '../src/index.js';
import { addNic, vmOn } from './machines.js';

/** Where a record stands in a stream. */
export interface RecordMark {
  readonly name: RecordName | `type 0x${string}`;
  readonly offset: number;
  readonly size: number;
}

/** A migration stream as it crossed the wire, and the guest it carried. */
export interface Recording {
  readonly bytes: Uint8Array;
  readonly records: readonly RecordMark[];
  /** The source's RAM hash and nic state when it handed over. */
  readonly ramHash: string;
  readonly deviceState: Uint8Array;
}

const BY_TYPE = new Map<number, RecordName>(Object.entries(RECORDS).map(([name, spec]) => [spec.type, name as RecordName]));

/** The records of a well-formed stream (header walk: no validation). */
export function recordMarks(bytes: Uint8Array): RecordMark[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const marks: RecordMark[] = [];
  for (let at = PREAMBLE_SIZE; at + RECORD_HEADER_SIZE <= bytes.byteLength; at += marks.at(-1)!.size) marks.push(markAt(view, at));
  return marks;
}

/** The record whose header is at `view[at]`. */
function markAt(view: DataView, at: number): RecordMark {
  const type = view.getUint8(at);
  return { name: BY_TYPE.get(type) ?? `type 0x${type.toString(16)}`, offset: at, size: RECORD_HEADER_SIZE + view.getUint32(at + 4, true) };
}

/**
 * Migrate a busy guest (vCPU writes over all of RAM, a nic DMA-ing into its ring, with PRE_COPY
 * device data) in two precopy passes and stop-copy, with checksums, recording the forward stream.
 */
export async function recordMigration(options: { writesPerStep?: number } = {}): Promise<Recording> {
  const srcHost = new SimHost(simMachine());
  const source = await vmOn(srcHost, { small: true });
  const destination = await vmOn(new SimHost(simMachine()), { incoming: true, small: true });
  const nic = await addNic(source, NIC_A, 'iommufd');
  await addNic(destination, NIC_A, 'iommufd');
  const workload = new SimGuest(source, srcHost, [{ nic, ring: 0x10_0000n }], { storesPerStep: options.writesPerStep ?? 16 });
  await workload.setUpNics();
  await workload.step();
  source.events.on('migration:iteration', () => void workload.step());
  const [out, wire] = transportPair();
  const [tap, into] = transportPair();
  const chunks: Uint8Array[] = [];
  relay(wire, tap, (chunk) => void chunks.push(chunk.slice()));
  await Promise.all([migrateOutgoing(source, out, { maxIterations: 2, downtimeLimitMs: 0, integrity: true }), migrateIncoming(destination, into)]);
  const recording = { bytes: Buffer.concat(chunks), ramHash: ramHash(source.memory), deviceState: srcHost.deviceState(NIC_A) };
  await source.close();
  await destination.close();
  return { ...recording, bytes: new Uint8Array(recording.bytes), records: recordMarks(recording.bytes) };
}

/** What a replay ended with. */
export type Replayed = { readonly result: IncomingResult } | { readonly error: unknown };

/**
 * Feed `bytes` to `destination` as a source would, reading its replies, then end the stream
 * (`after: 'end'`) or keep the connection open and silent (`'hold'`). Resolves with how
 * `migrateIncoming` ended, and the return path's records.
 */
export async function replay(
  bytes: Uint8Array, destination: Vmm, options: IncomingOptions & { after?: 'end' | 'hold'; onSent?: () => void } = {},
): Promise<Replayed & { replies: Uint8Array }> {
  const [out, into] = transportPair();
  const incoming = migrateIncoming(destination, into, options).then((result) => ({ result }), (error: unknown) => ({ error }));
  const replies = drain(out);
  try {
    for (let at = 0; at < bytes.byteLength; at += 64 << 10) await out.write([bytes.slice(at, at + (64 << 10))]);
    options.onSent?.();
    if (options.after !== 'hold') await out.end();
  } catch {
    // The destination gave up first and destroyed the connection.
  }
  const ended = await incoming;
  out.destroy();
  return { ...ended, replies: await replies };
}

/** Everything `t` receives until it ends or fails. */
async function drain(t: MigrationTransport): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  try {
    for (let c = await t.read(); c; c = await t.read()) chunks.push(c);
  } catch {
    // Lost: what arrived before counts.
  }
  return new Uint8Array(Buffer.concat(chunks));
}

/**
 * Copy everything between `a` and `b`, letting `edit` see forward chunks (given their stream
 * offset) and replace them. Edit a copy: a chunk may be a view of the source's guest RAM.
 */
export function relay(a: MigrationTransport, b: MigrationTransport, edit?: (chunk: Uint8Array, offset: number) => Uint8Array | void): void {
  const pump = async (from: MigrationTransport, to: MigrationTransport, change?: typeof edit) => {
    let offset = 0;
    try {
      for (let chunk = await from.read(); chunk; chunk = await from.read()) {
        const sent = change?.(chunk, offset) ?? chunk;
        offset += chunk.byteLength;
        await to.write([sent]);
      }
      await to.end();
    } catch (e) {
      to.destroy(e as Error);
    }
  };
  void pump(a, b, edit);
  void pump(b, a);
}

/** Follows a forward stream chunk by chunk, reporting each record once its first 32 bytes passed. */
export class StreamWalk {
  #bytes = new Uint8Array(0);
  #next = PREAMBLE_SIZE;

  /** The records whose head is complete with `chunk` (the next chunk of the stream). */
  feed(chunk: Uint8Array): RecordMark[] {
    const all = new Uint8Array(this.#bytes.byteLength + chunk.byteLength);
    all.set(this.#bytes);
    all.set(chunk, this.#bytes.byteLength);
    this.#bytes = all;
    const view = new DataView(all.buffer);
    const marks: RecordMark[] = [];
    while (this.#next + RECORD_HEADER_SIZE <= all.byteLength) {
      const mark = markAt(view, this.#next);
      if (this.#next + Math.min(mark.size, 32) > all.byteLength) break;
      marks.push(mark);
      this.#next += mark.size;
    }
    return marks;
  }

  /** The little-endian u32 at stream offset `at` (which has passed). */
  u32(at: number): number {
    return new DataView(this.#bytes.buffer, this.#bytes.byteOffset).getUint32(at, true);
  }
}

/** A fresh destination VM for a recording: its RAM layout and nic, on `host`. */
export async function freshDestination(host: SimHost): Promise<Vmm> {
  const vmm = await vmOn(host, { incoming: true, small: true });
  await addNic(vmm, NIC_A, 'iommufd');
  return vmm;
}
