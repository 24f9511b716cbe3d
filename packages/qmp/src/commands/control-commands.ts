// The monitor's own commands (qapi/control.json, qapi/misc.json): query-version, query-commands, quit.

import type { QmpCommand } from '../protocol/qmp-command.js';

/**
 * The QEMU release whose QAPI schema vmmkit's commands follow (argument names, results, errors):
 * what query-version and the greeting report, so that a management stack picks the matching
 * dialect. `package` says it is vmmkit.
 */
export const QMP_SCHEMA_VERSION = { qemu: { major: 11, minor: 1, micro: 0 }, package: 'vmmkit 0.1.0' } as const;

export const queryVersion: QmpCommand = { name: 'query-version', args: {}, run: () => QMP_SCHEMA_VERSION };

export const queryCommands: QmpCommand = {
  name: 'query-commands',
  args: {},
  run: (_args, { server }) => server.commandNames().map((name) => ({ name })),
};

export const quit: QmpCommand = {
  name: 'quit',
  args: {},
  run: (_args, { server }) => {
    // Answer first: the VMM closes after the reply went out (QEMU's qmp_quit requests shutdown).
    setImmediate(() => server.quit());
    return {};
  },
};

export const CONTROL_COMMANDS: readonly QmpCommand[] = [queryVersion, queryCommands, quit];
