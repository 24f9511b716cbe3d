// The migration recorder: folded from a real migration of the demo VM on SimHost, it holds the
// plan, every pass with what each tracker found, the decisions' downtime estimates and the
// totals; and the fold adds the switchover's two syncs into the stop-copy pass.

import { describe, expect, it } from 'vitest';
import { migrate } from '@vmmkit/migration';
import { createDemoPair } from '../src/demo/demo-pair.js';
import { demoScenario } from '../src/demo/demo-scenario.js';
import { recordMigration } from '../src/report/migration-recorder.js';
import { initialRecorderState, recordEvent, type RecordedEvent } from '../src/report/record-event.js';

describe('recordMigration', () => {
  it('records a real migration pass by pass', async () => {
    const pair = await createDemoPair(demoScenario('device'), 32);
    const recording = recordMigration(pair.source.vm.vmm, 'device');
    try {
      pair.activity.start();
      const result = await migrate(pair.source.vm.vmm, pair.destination.vm.vmm, { maxIterations: 3, downtimeLimitMs: 0, maxBandwidth: 256 << 20 });
      recording.stop();
      const record = recording.record;
      expect(record.label).toBe('device');
      expect(record.containers.map((c) => [c.backend, c.strategy])).toEqual([['vfio-iommu-legacy', 'device'], ['vfio-iommu-iommufd', 'device']]);
      expect(record.blockers).toEqual([]);
      // Three precopy passes (the limit of 0 is never met), then stop-copy.
      expect(record.passes.map((p) => `${p.phase}:${p.iteration}`)).toEqual(['precopy:1', 'precopy:2', 'precopy:3', 'stop-copy:4']);
      const [first, ...later] = record.passes;
      expect(first!.found).toEqual([{ key: 'all-ram', kind: 'all-ram', label: 'all of RAM (first pass)', pages: (32 << 20) / 4096 }]);
      expect(first!.pagesSent + first!.zeroPages).toBe((32 << 20) / 4096);
      expect(first!.expectedDowntimeMs).toBeUndefined();
      for (const p of later) {
        expect(p.found.map((t) => t.key)).toEqual(['guest', ...record.containers.map((c) => `container:${c.container}`)]);
        expect(p.dirtyPages).toBe(p.found.reduce((n, t) => n + t.pages, 0));
        expect(p.expectedDowntimeMs).toBeGreaterThan(0);
      }
      // The NICs' rings: each container's tracker found the pages its NIC wrote.
      for (const p of later.slice(0, -1)) for (const t of p.found.slice(1)) expect(t.pages, `${t.label} in pass ${p.iteration}`).toBeGreaterThan(0);
      // The stop-copy pass carries the estimate the migration switched over on.
      expect(record.passes.at(-1)!.expectedDowntimeMs).toBe(result.expectedDowntimeMs);
      expect(record.outcome).toMatchObject({ iterations: 3, converged: false, pagesSent: result.pagesSent, downtimeMs: result.downtimeMs });
      expect(record.passes.reduce((n, p) => n + p.pagesSent, 0)).toBe(result.pagesSent);
      expect(record.passes.reduce((n, p) => n + p.zeroPages, 0)).toBe(result.zeroPages);
      expect(record.passes.reduce((n, p) => n + p.bytesSent, 0)).toBeLessThanOrEqual(result.bytesSent);
      // Per container, the passes add up to what the migration reports.
      for (const c of record.outcome!.containers) {
        expect(record.passes.reduce((n, p) => n + (p.found.find((t) => t.label === c.container)?.pages ?? 0), 0)).toBe(c.dirtyPages);
      }
      // Plain data: it survives JSON.
      expect(JSON.parse(JSON.stringify(record))).toEqual(record);
    } finally {
      recording.stop();
      await pair.close();
    }
  });
});

describe('recordEvent', () => {
  const container = { container: 'c0', strategy: 'device' as const };
  const sync = (phase: 'precopy' | 'stop-copy', guestWrites: number, found: number, dirtyPages: number, expectedDowntimeMs: number): RecordedEvent => ({
    name: 'migration:dirty-sync',
    payload: {
      iteration: 2, phase, guestWrites, pages: guestWrites + found, providers: [], containers: [{ ...container, pages: found }],
      durationMs: 1, dirtyPages, expectedDowntimeMs,
    },
  });
  const progress = (iteration: number, phase: 'precopy' | 'stop-copy', pagesSent: number, bytesSent: number): RecordedEvent => ({
    name: 'migration:progress',
    payload: { iteration, phase, pagesSent, zeroPages: 0, deviceBytes: 0, bytesSent, throughput: 1 << 20, dirtyPages: pagesSent, expectedDowntimeMs: 5 },
  });

  it('adds the syncs before a pass into it, with the estimate that decided the switchover', () => {
    const events: RecordedEvent[] = [
      progress(1, 'precopy', 100, 1000),
      // Iteration 2: 10 guest pages and 5 from the container, expected downtime 42 ms: switch
      // over; the last sync finds 2 more written by the guest and 1 by the device.
      sync('precopy', 10, 5, 15, 42),
      { name: 'migration:switchover', payload: { passes: 1, converged: true, expectedDowntimeMs: 42, dirtyPages: 15 } },
      sync('stop-copy', 2, 1, 18, 3),
      progress(2, 'stop-copy', 18, 1500),
    ];
    const state = events.reduce(recordEvent, initialRecorderState('x'));
    const last = state.record.passes[1]!;
    expect(last.found.map((t) => [t.key, t.pages])).toEqual([['guest', 12], ['container:c0', 6]]);
    expect(last.dirtyPages).toBe(18);
    expect(last.expectedDowntimeMs).toBe(42);
    expect(last.bytesSent).toBe(500);
    // A state is never changed by what follows it.
    const before = events.slice(0, 2).reduce(recordEvent, initialRecorderState('x'));
    const snapshot = structuredClone(before);
    events.slice(2).reduce(recordEvent, before);
    expect(before).toEqual(snapshot);
  });
});
