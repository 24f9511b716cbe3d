// @vmmkit/examples: the demo machine and guest that the demo, the CLI and the examples share.

export * from './guest/demo-machine.js';
export * from './guest/demo-vm.js';
export * from './guest/guest-activity.js';
export * from './guest/ram-hash.js';
