// A simulated guest at work on a SimHost, and the machines it runs on: for tests, examples,
// demos and benchmarks (exported from @vmmkit/sim, and again from @vmmkit/sim/testing).

export * from './sim-machines.js';
export * from './sim-nic-driver.js';
export * from './sim-guest.js';
export * from './sim-guest-runner.js';
export * from './ram-hash.js';
