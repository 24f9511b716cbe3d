// @vmmkit/sim/testing: harnesses that run vmmkit's contract suites on SimHost, the simulated
// machines, and a simulated guest at work on them (for tests, examples and benchmarks).

export * from './vfio-contract-harness.js';
export * from './sim-machines.js';
export * from './sim-nic-driver.js';
export * from './sim-guest.js';
export * from './sim-guest-runner.js';
export * from './ram-hash.js';
