// The VMM's events as QMP events (qapi/run-state.json STOP/RESUME, qapi/vfio.json VFIO_MIGRATION);
// MIGRATION and MIGRATION_PASS come from the migration state, DEVICE_DELETED from the QOM paths.

import { isVfioVmmDevice, type Vmm } from '@vmmkit/core';
import '@vmmkit/migration';
import type { QmpEmit } from './state/migration-state.js';
import type { QomPaths } from './state/qom-paths.js';

/** The VFIO_DEVICE_STATE_* names QapiVfioMigrationState has. */
const VFIO_STATES = new Set(['STOP', 'RUNNING', 'STOP_COPY', 'RESUMING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P']);

/** A device that may ask for VFIO_MIGRATION events (vfio-pci's `migration-events=on`). */
interface MigrationEventsOption {
  readonly options?: { readonly migrationEvents?: boolean };
}

/** Forward the VMM's events to the clients; returns how to stop. */
export function forwardVmmEvents(vmm: Vmm, emit: QmpEmit, paths: QomPaths): () => void {
  const runState = (e: { running: boolean }): void => emit(e.running ? 'RESUME' : 'STOP');
  const deviceState = (e: { device: string; to: string }): void => {
    const device = vmm.devices.find((d) => isVfioVmmDevice(d) && d.vfio.name === e.device);
    if (!device || (device as MigrationEventsOption).options?.migrationEvents !== true || !VFIO_STATES.has(e.to)) return;
    // An anonymous device's id is empty, as QEMU sends its NULL id.
    emit('VFIO_MIGRATION', { 'device-id': paths.clientId(device.id) ?? '', 'qom-path': paths.path(device.id), 'device-state': e.to.toLowerCase().replaceAll('_', '-') });
  };
  vmm.events.on('vm:run-state', runState);
  vmm.events.on('migration:device-state', deviceState);
  return () => {
    vmm.events.off('vm:run-state', runState);
    vmm.events.off('migration:device-state', deviceState);
  };
}
