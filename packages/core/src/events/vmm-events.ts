// The typed trace points of a VMM (QEMU's trace-events, as events). Names are noun:past-participle;
// payloads are single readonly objects. Packages add their own events by augmenting VmmEvents:
//   declare module '@vmmkit/core' { interface VmmEvents { 'migration:progress': [MigrationProgress] } }

import { EventEmitter } from 'eventemitter3';
import type { DirtyTrackingStrategy } from '../vfio/dirty/dirty-tracking-strategy.js';

/** The events every VMM emits; other packages extend this interface by declaration merging. */
export interface VmmEvents {
  /** The guest started or stopped running (its vCPUs follow this). */
  'vm:run-state': [e: Readonly<{ running: boolean; reason: string }>];
  'object:added': [e: Readonly<{ id: string; type: string }>];
  'object:removed': [e: Readonly<{ id: string; type: string }>];
  'device:realized': [e: Readonly<{ id: string; driver: string; name: string }>];
  'device:unrealized': [e: Readonly<{ id: string; driver: string; name: string }>];
  'vfio:container-created': [e: Readonly<{ container: string; backend: string }>];
  'vfio:container-destroyed': [e: Readonly<{ container: string; backend: string }>];
  'vfio:device-attached': [e: Readonly<{ device: string; container: string; backend: string }>];
  'vfio:device-detached': [e: Readonly<{ device: string; container: string; backend: string }>];
  'vfio:hwpt-allocated': [e: Readonly<{ container: string; hwptId: number; dirtyTracking: boolean; device: string }>];
  'vfio:hwpt-freed': [e: Readonly<{ container: string; hwptId: number }>];
  /** A container's dirty tracking started or stopped, with the strategy it runs. */
  'vfio:dirty-tracking-changed': [e: Readonly<{ container: string; started: boolean; strategy: DirtyTrackingStrategy }>];
  /** Something went wrong that vmmkit worked around (QEMU's warn_report). */
  'vfio:warning': [e: Readonly<{ container?: string; device?: string; message: string }>];
}

/** The event bus of one VMM; the class is its own injection token. */
export class VmmEventBus extends EventEmitter<VmmEvents> {}
