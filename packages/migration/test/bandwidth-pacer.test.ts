// The bandwidth pacer on a virtual clock (no real time passes): a fixed limit, the credit an idle
// sender keeps, senders sharing one limit, and a limit read live from its owner that changes
// while a sender waits (QEMU applies max-bandwidth to the running migration).

import { describe, expect, it } from 'vitest';
import { ConfigError } from '@vmmkit/core';
import { BandwidthPacer, type PacerClock } from '../src/stream/bandwidth-pacer.js';

/** A clock whose sleeps advance it at once, recording each one; `onSleep` may change the world meanwhile. */
class VirtualClock implements PacerClock {
  time = 1000;
  readonly sleeps: number[] = [];
  onSleep: (() => void) | undefined;
  now(): number {
    return this.time;
  }
  sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    this.time += ms;
    this.onSleep?.();
    return Promise.resolve();
  }
  get slept(): number {
    return this.sleeps.reduce((a, b) => a + b, 0);
  }
}

describe('BandwidthPacer', () => {
  it('holds a sender to a fixed limit: 1000 bytes at 1000 B/s wait a second', async () => {
    const clock = new VirtualClock();
    const pacer = new BandwidthPacer(1000, clock);
    await pacer.pace(1000);
    expect(clock.slept).toBeCloseTo(1000, 0);
    await pacer.pace(500);
    expect(clock.slept).toBeCloseTo(1500, 0);
  });

  it('an idle sender keeps a credit of 20 ms, not more', async () => {
    const clock = new VirtualClock();
    const pacer = new BandwidthPacer(1000, clock);
    await pacer.pace(1000);
    clock.time += 10_000;
    const before = clock.slept;
    // 20 bytes of credit at 1000 B/s: 20 go at once, the other 980 wait.
    await pacer.pace(1000);
    expect(clock.slept - before).toBeCloseTo(980, 0);
  });

  it('senders sharing it share the limit', async () => {
    const clock = new VirtualClock();
    const pacer = new BandwidthPacer(1000, clock);
    await Promise.all([pacer.pace(500), pacer.pace(500)]);
    expect(clock.time - 1000).toBeGreaterThanOrEqual(999);
  });

  it('follows a live limit: raised while a sender waits, the sender goes on at the new rate', async () => {
    const clock = new VirtualClock();
    let limit: number | undefined = 1000;
    const pacer = new BandwidthPacer(() => limit, clock);
    // At 1000 B/s, 10 000 bytes would take 10 s; after 100 ms the limit becomes 1 MB/s.
    clock.onSleep = () => {
      if (clock.slept >= 100) limit = 1_000_000;
    };
    await pacer.pace(10_000);
    expect(clock.slept).toBeLessThan(200);
    expect(pacer.bytesPerSecond).toBe(1_000_000);
  });

  it('follows a live limit: lowered while a sender waits, the sender waits longer', async () => {
    const clock = new VirtualClock();
    let limit: number | undefined = 1_000_000;
    const pacer = new BandwidthPacer(() => limit, clock);
    await pacer.pace(1_000_000);
    expect(clock.slept).toBeCloseTo(1000, 0);
    limit = 1000;
    const before = clock.slept;
    await pacer.pace(1000);
    expect(clock.slept - before).toBeGreaterThanOrEqual(979);
  });

  it('a live limit that becomes unlimited (undefined or 0) releases a waiting sender at once', async () => {
    for (const off of [undefined, 0]) {
      const clock = new VirtualClock();
      let limit: number | undefined = 100;
      const pacer = new BandwidthPacer(() => limit, clock);
      clock.onSleep = () => void (limit = off);
      await pacer.pace(1_000_000);
      expect(clock.sleeps.length).toBe(1);
      expect(pacer.bytesPerSecond).toBeUndefined();
      // And owes nothing once limited again.
      limit = 1000;
      const before = clock.slept;
      await pacer.pace(1);
      expect(clock.slept - before).toBeLessThan(2);
    }
  });

  it.each([0, -1, Infinity, NaN])('refuses a fixed limit of %s naming maxBandwidth', (bad) => {
    expect(() => new BandwidthPacer(bad)).toThrow(ConfigError);
    expect(() => new BandwidthPacer(bad)).toThrow(/maxBandwidth/);
  });
});
