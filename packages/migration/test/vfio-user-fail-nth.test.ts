// Fail the 1st, 2nd, ... Nth host call of a vfio-user device migration below the VM (two nics
// served over in-process pairs on one SimHost: guest RAM memfds, the servers' BAR files and
// migration data, device DMA logging, the save and the load), counted in a clean run. Every
// failure is a typed error, the migration gives up as a real one does (the source resumes, the
// destination resets), and the host's census returns to its baseline.

import { describe, expect, it } from 'vitest';
import { VmmError } from '@vmmkit/core';
import { SimHost } from '@vmmkit/sim';
import { failEachHostCall, stepErrors } from '@vmmkit/sim/testing';
import { VfioMigration } from '@vmmkit/migration';
import { makeVfioUserNic, startNicTraffic, type VfioUserNic } from './vfio-user-rig.js';

/** One migration of a vfio-user nic; returns the errors its steps ended with (none in a clean run). */
async function life(host: SimHost): Promise<unknown[]> {
  const { errors, step } = stepErrors();
  let src: VfioUserNic | undefined;
  let dst: VfioUserNic | undefined;
  await step(async () => { src = await makeVfioUserNic(host, { name: 'src-nic' }); });
  await step(async () => { dst = await makeVfioUserNic(host, { name: 'dst-nic' }); });
  if (src && dst) {
    const source = src;
    const save = new VfioMigration(source.device, source.events, { chunkSize: 4096 });
    const load = new VfioMigration(dst.device, dst.events);
    const tracking = source.container.dirtyTracking;
    const failed = errors.length;
    const chunks: Uint8Array[] = [];
    const drain = async (): Promise<void> => {
      for (let got = await save.readChunk(); got !== 'empty' && got !== 'end'; got = await save.readChunk()) chunks.push(got.slice());
    };
    await step(async () => {
      source.memory.startDirtyLog();
      await tracking.start();
      await startNicTraffic(source);
      source.advance(2);
      await save.saveSetup();
      await drain();
      await tracking.sync(true);
      await save.switchover();
      await drain();
      await tracking.sync(false);
      await save.saveCleanup();
      await load.loadSetup();
      for (const c of chunks) await load.writeChunk(c);
      await load.finishLoad();
      await load.start();
    });
    if (errors.length > failed) {
      // As a failed migration does: the source's device runs again, the destination's is reset.
      await step(() => save.resumeRunning());
      await step(() => load.abortLoad());
    }
    await step(() => tracking.stop());
    save.cleanup();
    load.cleanup();
  }
  await step(() => src?.close());
  await step(() => dst?.close());
  return errors;
}

describe('vfio-user migration: fail the nth host call', () => {
  it('runs clean without faults', async () => {
    const host = new SimHost();
    const base = host.census();
    expect(await life(host)).toEqual([]);
    expect(host.census()).toEqual(base);
  });

  it('every failure is typed and nothing is left behind', async () => {
    const { calls, surfaced } = await failEachHostCall(life, ({ what, errors, host, baseline }) => {
      for (const e of errors) expect(e, `${what}: ${String(e)}`).toBeInstanceOf(VmmError);
      expect(host.census(), what).toEqual(baseline);
    });
    expect(calls).toBeGreaterThan(10);
    expect(surfaced, `${surfaced} of ${calls} faults surfaced`).toBeGreaterThan(calls / 2);
  }, 120_000);
});
