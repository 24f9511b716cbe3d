// Folding a source VMM's `migration:*` events into a MigrationRecord, as a pure function of the
// state so far and one event (packages/migration/src/events.ts has the catalogue).

import type { VmmEvents } from '@vmmkit/core';
import { STREAM_PAGE_SIZE } from '@vmmkit/migration';
import type { MigrationRecord, PassRecord, TrackerPages } from './migration-record.js';

/** The events a recorder listens to. */
export const RECORDED_EVENTS = [
  'migration:started', 'migration:dirty-sync', 'migration:progress', 'migration:switchover', 'migration:completed',
] as const;

export type RecordedEventName = (typeof RECORDED_EVENTS)[number];

/** One recorded event: its name and its payload, as the VMM emitted them. */
export type RecordedEvent = { [K in RecordedEventName]: { readonly name: K; readonly payload: VmmEvents[K][0] } }[RecordedEventName];

/** The record so far, and what the syncs found for the pass that has not been sent yet. */
export interface RecorderState {
  readonly record: MigrationRecord;
  readonly pending: {
    readonly found: readonly TrackerPages[];
    /** Pages in the dirty log after the last pending sync (already counted in `found`). */
    readonly logPages: number;
    /** Pages the pending precopy syncs' trackers (containers, providers) added to the log. */
    readonly trackerPages: number;
    readonly syncMs: number;
    /** The migration's own estimate at the switchover. */
    readonly switchoverMs?: number;
  };
}

/** The state before any event: an empty record named `label`. */
export function initialRecorderState(label: string): RecorderState {
  return {
    record: { label, containers: [], blockers: [], warnings: [], passes: [] },
    pending: { found: [], logPages: 0, trackerPages: 0, syncMs: 0 },
  };
}

/** The state after `event`. Pure: `state` is not changed. */
export function recordEvent(state: RecorderState, event: RecordedEvent): RecorderState {
  switch (event.name) {
    case 'migration:started': {
      const plan = event.payload.plan;
      const fresh = initialRecorderState(state.record.label);
      const containers = plan.containers.map((c) => ({
        container: c.container, backend: c.backend, strategy: c.strategy, reason: c.reason, devices: [...c.devices],
      }));
      const record = { ...fresh.record, containers, blockers: plan.blockers.map((b) => b.reason), warnings: [...plan.warnings] };
      return { ...fresh, record };
    }
    case 'migration:dirty-sync':
      return { ...state, pending: addSync(state.pending, event.payload) };
    case 'migration:switchover':
      return { ...state, pending: { ...state.pending, switchoverMs: event.payload.expectedDowntimeMs } };
    case 'migration:progress':
      return { record: { ...state.record, passes: [...state.record.passes, closePass(state, event.payload)] }, pending: initialRecorderState('').pending };
    case 'migration:completed': {
      // A copy: the record shares nothing with the migration's own objects.
      const outcome = { ...event.payload, containers: event.payload.containers.map((c) => ({ ...c, devices: [...c.devices] })) };
      return { ...state, record: { ...state.record, outcome } };
    }
  }
}

type SyncPayload = VmmEvents['migration:dirty-sync'][0];

/**
 * Add one sync's findings. Its `guestWrites` counts every page in the dirty log, so when an
 * earlier sync was not followed by a pass (the one that decided to switch over, then the
 * stop-copy sync), the pages that sync already accounted for are taken out of the guest's share.
 */
function addSync(pending: RecorderState['pending'], sync: SyncPayload): RecorderState['pending'] {
  const found: TrackerPages[] = [
    { key: 'guest', kind: 'guest', label: 'guest writes', pages: Math.max(0, sync.guestWrites - pending.logPages) },
    ...sync.providers.map((p): TrackerPages => ({ key: `provider:${p.name}`, kind: 'provider', label: p.name, pages: p.pages })),
    ...sync.containers.map((c): TrackerPages => ({ key: `container:${c.container}`, kind: 'container', label: c.container, strategy: c.strategy, pages: c.pages })),
  ];
  const tracked = sync.phase === 'precopy' ? Math.max(0, sync.pages - sync.guestWrites) : 0;
  return {
    ...pending, found: mergeFound(pending.found, found), logPages: sync.pages,
    trackerPages: pending.trackerPages + tracked, syncMs: pending.syncMs + sync.durationMs,
  };
}

/** Sum pages by tracker, keeping the order trackers first appeared in. */
function mergeFound(a: readonly TrackerPages[], b: readonly TrackerPages[]): TrackerPages[] {
  const merged = a.map((t) => ({ ...t }));
  for (const t of b) {
    const same = merged.find((m) => m.key === t.key);
    if (same) same.pages += t.pages;
    else merged.push({ ...t });
  }
  return merged;
}

/** The pass a `migration:progress` event ends, from it and what the syncs before it found. */
function closePass(state: RecorderState, p: VmmEvents['migration:progress'][0]): PassRecord {
  const passes = state.record.passes;
  const previous = passes[passes.length - 1];
  const bytesBefore = passes.reduce((n, x) => n + x.bytesSent, 0);
  // The first pass has no sync before it: the dirty log starts with all of RAM.
  const found = state.pending.found.length > 0 || previous
    ? state.pending.found
    : [{ key: 'all-ram', kind: 'all-ram' as const, label: 'all of RAM (first pass)', pages: p.dirtyPages }];
  return {
    iteration: p.iteration, phase: p.phase, found, dirtyPages: found.reduce((n, t) => n + t.pages, 0),
    expectedDowntimeMs: p.phase === 'stop-copy' ? state.pending.switchoverMs : expectedDowntimeAtSync(state),
    expectedAfterMs: p.expectedDowntimeMs, pagesSent: p.pagesSent, zeroPages: p.zeroPages, deviceBytes: p.deviceBytes,
    bytesSent: p.bytesSent - bytesBefore, throughput: p.throughput, syncMs: state.pending.syncMs,
  };
}

/**
 * The migration's estimate of the downtime at the sync that began the pending pass, which its
 * events carry only at the switchover: its estimate right after the last pass (guest writes and
 * the devices' pending state over the measured throughput) plus what the trackers added at the
 * sync, over the same throughput. Undefined before the first pass.
 */
export function expectedDowntimeAtSync(state: RecorderState): number | undefined {
  const last = state.record.passes.at(-1);
  if (!last || !(last.throughput > 0) || !Number.isFinite(last.expectedAfterMs)) return undefined;
  return last.expectedAfterMs + ((state.pending.trackerPages * STREAM_PAGE_SIZE) / last.throughput) * 1000;
}
