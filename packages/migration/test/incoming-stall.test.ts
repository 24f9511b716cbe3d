// A destination never waits forever: a source that goes silent after SETUP, inside a record, or
// before GO is given up after the idle timeout, and a cancel ends the wait at once. Either way the
// guest stays paused, the nic leaves RESUMING (its data fd closed: the census is back at its
// baseline), the source is told why, and the same destination then takes a migration.

import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '@vmmkit/core';
import { SimHost } from '@vmmkit/sim';
import { NIC_A, SimGuest, ramHash, simMachine } from '@vmmkit/sim/testing';
import {
  MigrationCancelledError, MigrationFailedError, MigrationTimeoutError, migrate, migrateIncoming, migrateOutgoing, transportPair,
  type MigrationPhase,
} from '../src/index.js';
import { addNic, vmOn } from './machines.js';
import { freshDestination, recordMigration, replay, type Recording } from './stream-replay.js';

let recording: Recording;
beforeAll(async () => {
  recording = await recordMigration();
});

/** Where the source goes silent: the bytes it sent, and the destination's phase then. */
const SILENCES: readonly [string, MigrationPhase, () => { cut: number; inside?: number }][] = [
  ['after SETUP', 'precopy', () => ({ cut: end(mark('SETUP')) })],
  // Inside the page data of the first RAM_PAGES record: its header promised more bytes.
  ['in the middle of a record', 'precopy', () => ({ cut: mark('RAM_PAGES').offset + 24 + 1000, inside: mark('RAM_PAGES').offset })],
  ['before GO', 'handover', () => ({ cut: mark('GO').offset })],
];

const mark = (name: string) => recording.records.find((r) => r.name === name)!;
const end = (r: { offset: number; size: number }): number => r.offset + r.size;
const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString('latin1');

/** The destination's host, a fresh destination on it, and its census before the migration. */
async function destination() {
  const host = new SimHost(simMachine());
  const vmm = await freshDestination(host);
  return { host, vmm, baseline: host.census() };
}

/** The destination holds nothing from the attempt, and takes the whole recorded migration. */
async function expectCleanAndUsable(d: Awaited<ReturnType<typeof destination>>): Promise<void> {
  expect(d.vmm.running).toBe(false);
  expect(d.host.census()).toEqual(d.baseline);
  const again = await replay(recording.bytes, d.vmm);
  expect('result' in again, String((again as { error?: unknown }).error)).toBe(true);
  expect(d.vmm.running).toBe(true);
  expect(ramHash(d.vmm.memory)).toBe(recording.ramHash);
  expect(Buffer.compare(d.host.deviceState(NIC_A), recording.deviceState)).toBe(0);
  await d.vmm.close();
}

describe('a source that goes silent', () => {
  it.for(SILENCES)('%s: the destination gives up after the idle timeout', async ([, phase, where]) => {
    const d = await destination();
    const { cut, inside } = where();
    let held: ReturnType<SimHost['census']> | undefined;
    const t0 = performance.now();
    const replayed = await replay(recording.bytes.subarray(0, cut), d.vmm, {
      idleTimeoutMs: 300, after: 'hold', onSent: () => setTimeout(() => (held = d.host.census()), 100),
    });
    const elapsed = performance.now() - t0;
    // While the source was silent, the nic sat in RESUMING (or loaded, before GO) with its data fd.
    expect(held?.objects['data_fd'] ?? 0).toBe(phase === 'handover' ? 0 : 1);
    const error = (replayed as { error: MigrationFailedError }).error;
    expect(error).toBeInstanceOf(MigrationFailedError);
    expect(error.phase).toBe(phase);
    const cause = error.cause as MigrationTimeoutError;
    expect(cause).toBeInstanceOf(MigrationTimeoutError);
    expect(cause.timeoutMs).toBe(300);
    expect(cause.waitedMs).toBeGreaterThanOrEqual(300);
    expect(cause.offset).toBe(cut);
    expect(cause.record?.offset).toBe(inside);
    expect(elapsed).toBeGreaterThanOrEqual(300);
    expect(error.message).toMatch(new RegExp(`during ${phase}: .*no bytes for \\d+ ms \\(idle timeout 300 ms\\) at stream offset ${cut}`));
    if (inside !== undefined) expect(error.message).toContain(`inside the RAM_PAGES record at offset ${inside}`);
    // The source was told why before the connection was closed.
    expect(text(replayed.replies)).toContain('no bytes for');
    await expectCleanAndUsable(d);
  });

  it('a source that sends nothing at all is given up too', async () => {
    const d = await destination();
    const replayed = await replay(new Uint8Array(0), d.vmm, { idleTimeoutMs: 100, after: 'hold' });
    const error = (replayed as { error: MigrationFailedError }).error;
    expect(error.phase).toBe('setup');
    expect(error.message).toMatch(/no bytes for \d+ ms \(idle timeout 100 ms\) at stream offset 0, where a record starts/);
    await expectCleanAndUsable(d);
  });

  it('a slow source is not a silent one: bytes trickling in keep the wait alive', async () => {
    const d = await destination();
    const [out, into] = transportPair();
    const incoming = migrateIncoming(d.vmm, into, { idleTimeoutMs: 150 });
    void (async () => {
      for (let r = await out.read(); r; r = await out.read());
    })().catch(() => undefined);
    // Every record boundary up to the first RAM_PAGES arrives fast; that record then trickles in,
    // 64 KiB every 60 ms, for far longer than the timeout in all.
    const first = mark('RAM_PAGES');
    await out.write([recording.bytes.slice(0, first.offset)]);
    for (let at = first.offset; at < recording.bytes.byteLength; at += 64 << 10) {
      await out.write([recording.bytes.slice(at, at + (64 << 10))]);
      if (at < first.offset + 6 * (64 << 10)) await new Promise((r) => setTimeout(r, 60));
    }
    await out.end();
    await incoming;
    expect(ramHash(d.vmm.memory)).toBe(recording.ramHash);
    await d.vmm.close();
  });

  it('an idle timeout that is not a number of ms is refused up front', async () => {
    const d = await destination();
    const [out, into] = transportPair();
    const error = await migrateIncoming(d.vmm, into, { idleTimeoutMs: -1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(String(error)).toContain('idleTimeoutMs must be a number of ms >= 0');
    await expect(out.write([new Uint8Array(1)])).rejects.toThrow(/connection lost/);
    expect(d.host.census()).toEqual(d.baseline);
    await d.vmm.close();
  });
});

describe('a cancelled destination', () => {
  it.for(SILENCES)('%s: gives up at once when its signal fires', async ([, phase, where]) => {
    const d = await destination();
    const abort = new AbortController();
    const replayed = await replay(recording.bytes.subarray(0, where().cut), d.vmm, {
      idleTimeoutMs: 0, signal: abort.signal, after: 'hold', onSent: () => setTimeout(() => abort.abort(), 50),
    });
    const error = (replayed as { error: MigrationFailedError }).error;
    expect(error).toBeInstanceOf(MigrationFailedError);
    expect(error.phase).toBe(phase);
    expect(error.cause).toBeInstanceOf(MigrationCancelledError);
    expect(error.message).toContain(`during ${phase}: the migration was cancelled on the destination`);
    expect(text(replayed.replies)).toContain('cancelled on the destination');
    await expectCleanAndUsable(d);
  });

  it('a signal that fired already refuses before anything is read', async () => {
    const d = await destination();
    const replayed = await replay(recording.bytes, d.vmm, { signal: AbortSignal.abort() });
    const error = (replayed as { error: MigrationFailedError }).error;
    expect(error.phase).toBe('setup');
    expect(error.cause).toBeInstanceOf(MigrationCancelledError);
    await expectCleanAndUsable(d);
  });

  it('a live source is told, rolls back, and runs on', async () => {
    const srcHost = new SimHost(simMachine());
    const source = await vmOn(srcHost, { small: true });
    const nic = await addNic(source, NIC_A, 'iommufd');
    const workload = new SimGuest(source, srcHost, [{ nic, ring: 0x10_0000n }]);
    await workload.setUpNics();
    await workload.step();
    const srcBaseline = srcHost.census();
    const d = await destination();
    const abort = new AbortController();
    // Cancel the destination in the middle of precopy.
    source.events.on('migration:iteration', (e) => e.iteration === 2 && abort.abort());
    const [out, into] = transportPair();
    const [sent, received] = await Promise.allSettled([
      migrateOutgoing(source, out, { maxIterations: 5, downtimeLimitMs: 0 }),
      migrateIncoming(d.vmm, into, { signal: abort.signal }),
    ]);
    expect(received.status).toBe('rejected');
    expect(((received as PromiseRejectedResult).reason as MigrationFailedError).cause).toBeInstanceOf(MigrationCancelledError);
    expect(sent.status).toBe('rejected');
    expect(String((sent as PromiseRejectedResult).reason)).toContain('the destination refused the migration: migration failed on the destination during precopy: the migration was cancelled on the destination');
    expect(source.running).toBe(true);
    expect(srcHost.census()).toEqual(srcBaseline);
    expect(d.host.census()).toEqual(d.baseline);
    // Both VMs are fine: the source now migrates into a fresh destination.
    await d.vmm.close();
    const fresh = await freshDestination(d.host);
    await migrate(source, fresh, { maxIterations: 2, downtimeLimitMs: 0 });
    expect(ramHash(fresh.memory)).toBe(ramHash(source.memory));
    await fresh.close();
    await source.close();
  });
});
