// @vmmkit/sim/testing: harnesses that run vmmkit's contract suites on SimHost.

export * from './vfio-contract-harness.js';
export * from './difffuzz/index.js';
