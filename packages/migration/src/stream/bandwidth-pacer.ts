// A bandwidth limit (QEMU's max-bandwidth / rate limiting of the migration stream): callers account
// for the bytes they send and wait until the running rate is back under the limit.

import { ConfigError } from '@vmmkit/core';
import { setTimeout as sleep } from 'node:timers/promises';

// How far behind its schedule a sender may fall and then catch up in a burst.
const CREDIT_MS = 20;

/** Paces a sender to at most `bytesPerSecond`. */
export class BandwidthPacer {
  #due: number | undefined;

  /** @throws ConfigError (maxBandwidth) unless `bytesPerSecond` is a positive finite number. */
  constructor(readonly bytesPerSecond: number) {
    if (!(bytesPerSecond > 0 && Number.isFinite(bytesPerSecond))) throw new ConfigError(`maxBandwidth must be a positive number of bytes per second, got ${bytesPerSecond}`, 'maxBandwidth', String(bytesPerSecond));
  }

  /** Account for `bytes` sent now; resolves when sending more keeps within the limit. */
  async pace(bytes: number): Promise<void> {
    const now = performance.now();
    const due = Math.max(this.#due ?? now, now - CREDIT_MS) + (bytes * 1000) / this.bytesPerSecond;
    this.#due = due;
    if (due > now + 1) await sleep(due - now);
  }
}
