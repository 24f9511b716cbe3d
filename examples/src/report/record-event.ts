// Folding a source VMM's `migration:*` events into a MigrationRecord, as a pure function of the
// state so far and one event (packages/migration/src/events.ts has the catalogue).

import type { VmmEvents } from '@vmmkit/core';
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
    /** Pages dirty in the log after the last pending sync (what the next pass sends). */
    readonly dirtyPages: number;
    readonly syncMs: number;
    /** The migration's estimate of the downtime at the last pending sync (what it decided on). */
    readonly decisionMs?: number;
  };
}

/** The state before any event: an empty record named `label`. */
export function initialRecorderState(label: string): RecorderState {
  return {
    record: { label, containers: [], blockers: [], warnings: [], passes: [] },
    pending: { found: [], dirtyPages: 0, syncMs: 0 },
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
      return { ...state, pending: { ...state.pending, decisionMs: event.payload.expectedDowntimeMs } };
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

/** Add one sync's findings (each page counted once, by the tracker that found it first). */
function addSync(pending: RecorderState['pending'], sync: SyncPayload): RecorderState['pending'] {
  const found: TrackerPages[] = [
    { key: 'guest', kind: 'guest', label: 'guest writes', pages: sync.guestWrites },
    ...sync.providers.map((p): TrackerPages => ({ key: `provider:${p.name}`, kind: 'provider', label: p.name, pages: p.pages })),
    ...sync.containers.map((c): TrackerPages => ({ key: `container:${c.container}`, kind: 'container', label: c.container, strategy: c.strategy, pages: c.pages })),
  ];
  return {
    found: mergeFound(pending.found, found), dirtyPages: sync.dirtyPages, syncMs: pending.syncMs + sync.durationMs,
    decisionMs: sync.phase === 'precopy' ? sync.expectedDowntimeMs : pending.decisionMs,
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
    expectedDowntimeMs: previous ? state.pending.decisionMs : undefined,
    expectedAfterMs: p.expectedDowntimeMs, pagesSent: p.pagesSent, zeroPages: p.zeroPages, deviceBytes: p.deviceBytes,
    bytesSent: p.bytesSent - bytesBefore, throughput: p.throughput, syncMs: state.pending.syncMs,
  };
}
