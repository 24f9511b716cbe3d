// @vmmkit/sim/testing: harnesses that run vmmkit's contract suites on SimHost, with the
// simulated machines and guest the tests share (also exported from @vmmkit/sim).

export * from './vfio-contract-harness.js';
export * from '../guest/index.js';
export * from './difffuzz/index.js';
export * from './step-errors.js';
