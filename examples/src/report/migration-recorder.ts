// Records an outgoing migration of a VMM: listens to its `migration:*` events and folds them
// into a MigrationRecord with recordEvent().

import type { Vmm } from '@vmmkit/core';
import type { MigrationRecord } from './migration-record.js';
import { RECORDED_EVENTS, initialRecorderState, recordEvent, type RecordedEvent, type RecorderState } from './record-event.js';

/** A recording in progress. */
export interface MigrationRecording {
  /** The record so far (complete once `migration:completed` was emitted). */
  readonly record: MigrationRecord;
  /** Stop listening. Idempotent. */
  stop(): void;
}

/** Record the next outgoing migration of `source` (the VMM that migrates away), named `label`. */
export function recordMigration(source: Vmm, label: string): MigrationRecording {
  let state: RecorderState = initialRecorderState(label);
  const listeners = RECORDED_EVENTS.map((name) => {
    const listener = (payload: unknown): void => {
      state = recordEvent(state, { name, payload } as RecordedEvent);
    };
    source.events.on(name, listener);
    return () => source.events.off(name, listener);
  });
  return {
    get record() {
      return state.record;
    },
    stop() {
      for (const off of listeners.splice(0)) off();
    },
  };
}
