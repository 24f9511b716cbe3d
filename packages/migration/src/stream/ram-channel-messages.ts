// What the thread that owns a migration and a RAM channel's worker thread tell each other.

import type { AppliedRamRecord } from './ram-channel-read.js';
import type { SentError } from './thread-errors.js';

/** Guest RAM as a worker reaches it: each block at its address in this process. */
export interface SharedRam {
  readonly pageSize: number;
  readonly blocks: readonly { readonly name: string; readonly gpa: bigint; readonly size: bigint; readonly addr: bigint }[];
}

/** What a channel's worker starts with. */
export interface ChannelWorkerData {
  readonly role: 'send' | 'receive';
  /** The connection's name, for messages. */
  readonly name: string;
  /** The connection's fd (a duplicate, the worker's once it says `ready`). */
  readonly fd: number;
  /** Bytes received before the hand-over and not read yet. */
  readonly received: readonly Uint8Array[];
  readonly ram: SharedRam;
  /** Which connection it is, of how many channels. */
  readonly connection: number;
  readonly channels: number;
  /** Sender: checksum the stream. */
  readonly checksums: boolean;
  /** Receiver: the idle timeout (ms) of its reader. */
  readonly idleTimeoutMs?: number;
}

/** Owner to a sending worker; each request is answered by one `done` (or by `failed`), in order. */
export type SenderRequest =
  | { readonly op: 'open'; readonly channel: number }
  /** Send the runs of RAM block `block`: `runs` holds (first page, page count) pairs. */
  | { readonly op: 'send'; readonly block: number; readonly runs: Uint32Array }
  | { readonly op: 'sync'; readonly pass: number }
  | { readonly op: 'end' };

/** Owner to a receiving worker: every channel has reached pass `pass`, read on. */
export interface ReceiverRelease {
  readonly op: 'release';
  readonly pass: number;
  /** The pass was the last: only the end of the stream may follow. */
  readonly last: boolean;
}

/** Owner to any worker: drop the connection and exit. */
export interface Destroy {
  readonly op: 'destroy';
}

/** A worker to its owner. */
export type WorkerMessage =
  /** The worker owns the fd now. */
  | { readonly op: 'ready' }
  /** A request done; `last` for `end`, after which the worker exits. */
  | { readonly op: 'done'; readonly pages: number; readonly zeroPages: number; readonly bytes: number; readonly last?: true }
  | { readonly op: 'claim'; readonly channel: number }
  | { readonly op: 'records'; readonly records: readonly AppliedRamRecord[] }
  | { readonly op: 'arrived'; readonly pass: number; readonly bytes: number }
  | { readonly op: 'ended'; readonly pass: number; readonly bytes: number }
  | { readonly op: 'failed'; readonly error: SentError };
