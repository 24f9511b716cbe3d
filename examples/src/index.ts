// @vmmkit/examples: the demo VM that the demo, the CLI and the examples share (its machine and
// guest are @vmmkit/sim's).

export * from './guest/demo-vm.js';
