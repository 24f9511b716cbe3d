// The VM's migration parameters (QEMU's migrate-set-parameters): checked all at once, used by a
// migration whose options say nothing, overridden by options that do, and the downtime limit
// read again at every precopy decision and the bandwidth limit while it sends, so that a change
// during a migration applies to it.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, Vmm } from '@vmmkit/core';
import { SimHost } from '@vmmkit/sim';
import { simMachine } from '@vmmkit/sim/testing';
import { DEFAULT_MIGRATION_PARAMETERS, migrate, migrationParameters } from '../src/index.js';
import { vmOn } from './machines.js';

let source: Vmm;
let destination: Vmm;

beforeEach(async () => {
  source = await vmOn(new SimHost(simMachine()), { small: true });
  destination = await vmOn(new SimHost(simMachine()), { small: true, incoming: true });
  // A guest at work: every pass finds dirty pages, so a downtime limit of 0 is never met.
  source.events.on('migration:iteration', ({ iteration }) => source.memory.write(BigInt(iteration) * 4096n, new Uint8Array([iteration])));
});
afterEach(async () => {
  await Promise.all([source.close(), destination.close()]);
});

describe('migrationParameters(vmm)', () => {
  it('starts at the defaults and keeps what is set', () => {
    const p = migrationParameters(source);
    expect(p.values).toEqual(DEFAULT_MIGRATION_PARAMETERS);
    p.set({ downtimeLimitMs: 50, maxBandwidth: 1e6 });
    p.set({ maxIterations: 4 });
    expect(p.values).toEqual({ downtimeLimitMs: 50, maxBandwidth: 1e6, maxIterations: 4 });
    p.set({ maxBandwidth: undefined });
    expect(p.values.maxBandwidth).toBeUndefined();
  });

  it.each([
    [{ downtimeLimitMs: -1 }, 'downtimeLimitMs'],
    [{ downtimeLimitMs: 2_000_001 }, 'downtimeLimitMs'],
    [{ downtimeLimitMs: 1.5 }, 'downtimeLimitMs'],
    [{ maxBandwidth: 0 }, 'maxBandwidth'],
    [{ maxBandwidth: Infinity }, 'maxBandwidth'],
    [{ maxIterations: 0 }, 'maxIterations'],
  ])('refuses %j naming %s, and changes nothing', (change, option) => {
    const p = migrationParameters(source);
    expect(() => p.set({ downtimeLimitMs: 10, ...change })).toThrow(expect.objectContaining({ option, message: expect.stringContaining(option) }));
    expect(p.values).toEqual(DEFAULT_MIGRATION_PARAMETERS);
  });

  it('is a ConfigError on a VM without migrationPlugin()', async () => {
    const bare = await Vmm.create({ host: new SimHost(simMachine()), plugins: [] });
    expect(() => migrationParameters(bare)).toThrow(ConfigError);
    await bare.close();
  });
});

describe('a migration and the parameters', () => {
  it('uses them where its options say nothing, and its options where they do', async () => {
    migrationParameters(source).set({ downtimeLimitMs: 0, maxIterations: 3 });
    expect((await migrate(source, destination)).iterations).toBe(3);
  });

  it('its own options win', async () => {
    migrationParameters(source).set({ downtimeLimitMs: 0, maxIterations: 3 });
    const result = await migrate(source, destination, { maxIterations: 1 });
    expect(result.iterations).toBe(1);
    expect(result.converged).toBe(false);
  });

  it('reads the downtime limit at every decision: raising it mid-migration lets it converge', async () => {
    const p = migrationParameters(source);
    p.set({ downtimeLimitMs: 0, maxIterations: 30 });
    source.events.on('migration:iteration', ({ iteration }) => {
      if (iteration === 3) p.set({ downtimeLimitMs: 2_000_000 });
    });
    const result = await migrate(source, destination);
    expect(result.converged).toBe(true);
    expect(result.iterations).toBe(2);
  });

  it('reads the bandwidth limit while it sends: lifting it mid-migration lets a crawling one finish', async () => {
    // 4 MiB the stream cannot skip as zero pages: at 16 KiB/s they would take over four minutes.
    const ram = new Uint8Array(4 << 20).map((_, i) => (i * 7 + 1) & 0xff);
    source.memory.write(0n, ram);
    const p = migrationParameters(source);
    p.set({ maxBandwidth: 16 << 10 });
    source.events.once('migration:iteration', () => {
      // The pacer is holding the first pass back by then; lifting the limit lets it go.
      setTimeout(() => p.set({ maxBandwidth: undefined }), 200);
    });
    const result = await migrate(source, destination);
    expect(result.bytesSent).toBeGreaterThan(4 << 20);
    expect(p.values.maxBandwidth).toBeUndefined();
  }, 30_000);
});
