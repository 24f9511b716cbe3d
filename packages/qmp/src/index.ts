// @vmmkit/qmp: a QMP server (QEMU's JSON machine protocol) that any vmmkit VMM can mount, with
// QEMU's commands, argument names, results, error classes and events.

export * from './qmp-server.js';
export * from './qmp-socket.js';
export * from './qmp-events.js';
export * from './protocol/qmp-error.js';
export * from './protocol/qmp-args.js';
export * from './protocol/qmp-command.js';
export * from './protocol/qmp-session.js';
export * from './protocol/json-splitter.js';
export * from './state/run-state.js';
export * from './state/migration-state.js';
export * from './state/pci-slots.js';
export * from './state/fd-sets.js';
export * from './commands/control-commands.js';
