// Starting and stopping the guest (qapi/run-state.json, qapi/misc.json): query-status, stop, cont.

import type { QmpCommand } from '../protocol/qmp-command.js';
import { genericError } from '../protocol/qmp-error.js';

export const queryStatus: QmpCommand = {
  name: 'query-status',
  args: {},
  run: (_args, { vmm, server }) => ({ running: vmm.running, status: server.runState.status }),
};

export const stop: QmpCommand = {
  name: 'stop',
  args: {},
  run: (_args, { vmm, server }) => {
    // A VM waiting for its migration is not running yet (QEMU only cancels the autostart there).
    if (server.runState.status !== 'inmigrate') vmm.pause('stop');
    return {};
  },
};

export const cont: QmpCommand = {
  name: 'cont',
  args: {},
  run: (_args, { vmm, server }) => {
    const status = server.runState.status;
    // The destination starts the guest itself once the migration arrived (QEMU's autostart).
    if (status === 'inmigrate') return {};
    if (status === 'postmigrate') throw genericError('the guest migrated away: its devices were handed over, it cannot run here again');
    if (status === 'finish-migrate') throw genericError('the migration is switching over: the guest runs again if it fails');
    vmm.resume('cont');
    return {};
  },
};

export const RUN_STATE_COMMANDS: readonly QmpCommand[] = [queryStatus, stop, cont];
