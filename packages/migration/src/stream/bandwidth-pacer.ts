// A bandwidth limit (QEMU's max-bandwidth / rate limiting of the migration stream): callers account
// for the bytes they send and wait until the running rate is back under the limit. The limit may
// be read live from its owner (the VM's migration parameters): QEMU applies a max-bandwidth set
// during a migration to that migration, so a waiting sender re-reads it every few milliseconds.

import { ConfigError } from '@vmmkit/core';
import { setTimeout as sleep } from 'node:timers/promises';

// How far behind its schedule a sender may fall and then catch up in a burst.
const CREDIT_MS = 20;
// The longest a sender sleeps before reading the limit again.
const SLICE_MS = 50;

/**
 * The limit a pacer follows: a fixed number of bytes per second, or how to read the current one
 * from whoever owns it (undefined or 0 there: unlimited for now).
 */
export type BandwidthLimit = number | (() => number | undefined);

/** The time a pacer reads and waits on: the system's, or a test's own. */
export interface PacerClock {
  /** Milliseconds, monotonic. */
  now(): number;
  sleep(ms: number): Promise<void>;
}

const SYSTEM_CLOCK: PacerClock = { now: () => performance.now(), sleep: (ms) => sleep(ms) };

/** Paces one or more senders (sharing it) to at most the limit's bytes per second. */
export class BandwidthPacer {
  readonly #limit: () => number | undefined;
  readonly #clock: PacerClock;
  /** Bytes accounted for since the start. */
  #owed = 0;
  /** Bytes the limit let through since the start; ahead of #owed by at most the credit. */
  #drained = 0;
  #drainedAt: number | undefined;

  /** @throws ConfigError (maxBandwidth) when a fixed limit is not a positive finite number. */
  constructor(limit: BandwidthLimit, clock: PacerClock = SYSTEM_CLOCK) {
    this.#clock = clock;
    if (typeof limit === 'number') {
      if (!(limit > 0 && Number.isFinite(limit))) throw new ConfigError(`maxBandwidth must be a positive number of bytes per second, got ${limit}`, 'maxBandwidth', String(limit));
      this.#limit = () => limit;
    } else {
      this.#limit = limit;
    }
  }

  /** The limit now, in bytes per second; undefined when unlimited. */
  get bytesPerSecond(): number | undefined {
    const rate = this.#limit();
    return rate !== undefined && rate > 0 ? rate : undefined;
  }

  /** Account for `bytes` sent now; resolves when sending more keeps within the limit (as it is then). */
  async pace(bytes: number): Promise<void> {
    // What the idle time let through is counted before these bytes, whose credit it cannot exceed.
    this.#drain();
    this.#owed += bytes;
    const ticket = this.#owed;
    for (;;) {
      const rate = this.#drain();
      if (rate === undefined || this.#drained >= ticket) return;
      const wait = ((ticket - this.#drained) * 1000) / rate;
      if (wait <= 1) return;
      await this.#clock.sleep(Math.min(wait, SLICE_MS));
    }
  }

  /** Let through what the limit allowed since the last look; returns the rate (undefined: unlimited). */
  #drain(): number | undefined {
    const now = this.#clock.now();
    const rate = this.bytesPerSecond;
    const since = this.#drainedAt ?? now;
    this.#drainedAt = now;
    if (rate === undefined) {
      // Unlimited: nothing is owed, and no credit was earned for a later limit.
      this.#drained = this.#owed;
      return undefined;
    }
    const credit = (rate * CREDIT_MS) / 1000;
    // An idle pacer keeps at most the credit: a sender that fell behind catches up by that much only.
    this.#drained = Math.min(this.#drained + ((now - since) * rate) / 1000, this.#owed + credit);
    return rate;
  }
}
